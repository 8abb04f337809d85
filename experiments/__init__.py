"""Runnable experiments over the library: the two demos (``python -m experiments.demo``,
``python -m experiments.demo_biased``), the Learning-Not-to-Learn demo and the seed studies.
They import :mod:`taml`; nothing in :mod:`taml` imports them."""
