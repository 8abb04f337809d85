#!/usr/bin/env bash
# cifar / msgd: see runfiles/experiment.sh. Extra flags pass through to main.py.
exec "$(dirname "$0")/experiment.sh" cifar msgd "$@"
