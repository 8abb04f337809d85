#!/usr/bin/env bash
# mwnet-cifar100-lt10 with every method (see runfiles/biased.sh); METHODS="erm mwnet" runs a subset.
# Extra flags pass through to main.py: runfiles/biased-mwnet-cifar100-lt10.sh --device cpu --seeds 0,1,2
set -euo pipefail
for method in ${METHODS:-erm class_balanced focal tml l2rw mwnet}; do
  "$(dirname "$0")/biased.sh" mwnet-cifar100-lt10 "$method" "$@"
done
