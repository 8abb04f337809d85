#!/usr/bin/env bash
# The paper's claim over seeds on the embedded data: MAML, Meta-SGD and Bayesian TAML (and
# Bayesian TAML with the original's wide initial posteriors, --sigma_init original), 1500 iterations at
# the demo's settings, each seed's run in <savedir>/<method>/seed<k>; then the report of
# every run (tables and learning curves). docs/studies.md has what it measured.
#   runfiles/ranking.sh [--seeds 0,1,2] [--savedir results/study_ranking] [study flags]
# (study flags: --workers 2, --n_train_iters N, --data_root DIR; re-running resumes)
set -euo pipefail
cd "$(dirname "$0")/.."
source "runfiles/seeds.sh"
[ $# -gt 0 ] && [[ " $* " == *" --seed"* ]] || set -- --seeds 0,1,2 "$@"
parse_seed_flags "results/study_ranking" "$@"
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || { bash scripts/install.sh; PY=.venv/bin/python; }
# shellcheck disable=SC2086  # SEEDS is a space-separated list on purpose
"$PY" -m experiments.study --study ranking --seeds $SEEDS --savedir "$BASE" "${FLAGS[@]}"
"$PY" main.py --mode report --savedir "$BASE"
