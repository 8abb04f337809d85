#!/usr/bin/env bash
# MAML vs Bayesian TAML on the embedded dataset (about 7 minutes on 2 CPU cores).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/python -m taml.demo "$@"
