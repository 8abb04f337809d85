#!/usr/bin/env bash
# The biased-data methods at fairly chosen settings (docs/biased.md): each paper's setting
# (long tail, 40% uniform and flip noise, binary imbalance) on the embedded glyphs and on the
# UCI digits, every method tuned on a held-out validation split with the same lr grid
# (seed 0), then seeds 0-2 at the chosen values; publishes the chosen values where the
# second demo reads them (docs/biased_settings.json, docs/biased_settings_digits.json).
#   runfiles/study-biased.sh [--workers 2] [--data_root DIR] [other biased_study flags]
# (about 35 min for the glyphs and 20 for the digits on 2 CPU cores; re-running reuses
# finished runs)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || { bash scripts/install.sh; PY=.venv/bin/python; }
"$PY" -m experiments.biased_study --dataset glyphs --seeds 0 1 2 \
    --publish docs/biased_settings.json "$@"
"$PY" -m experiments.biased_study --dataset digits --seeds 0 1 2 \
    --publish docs/biased_settings_digits.json "$@"
