#!/usr/bin/env bash
# MAML, Meta-SGD and Bayesian TAML on the embedded dataset (the demo prints its wall time).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/python -m experiments.demo "$@"
