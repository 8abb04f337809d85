#!/usr/bin/env bash
# The LNL table: every colour variance x {baseline, gray, lnl} (see runfiles/lnl.sh).
# VARIANCES="0.020 0.050" VARIANTS="lnl" run a subset. Extra flags pass through to main.py:
#   runfiles/lnl-table.sh --device cuda --seeds 0,1,2
set -euo pipefail
for var in ${VARIANCES:-0.020 0.025 0.030 0.035 0.040 0.045 0.050}; do
  for variant in ${VARIANTS:-baseline gray lnl}; do
    "$(dirname "$0")/lnl.sh" "$var" "$variant" "$@"
  done
done
