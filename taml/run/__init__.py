"""The run kit every family shares: run folders, checkpoints, CSV/JSON records, progress
bars, TensorBoard, distributed start-up and the one-line command-line parser.

Nothing here imports :mod:`taml.episodic`, :mod:`taml.biased` or :mod:`taml.data`; both
families build on it (tests/test_layers.py holds the rule)."""
