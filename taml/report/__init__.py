"""``python main.py --mode report --savedir results/``: the paper's tables and learning curves
from finished run folders (``collect`` reads, ``tables`` groups and aggregates, ``render``
writes markdown/CSV, ``plots`` draws, ``cli`` ties them together)."""
