#!/usr/bin/env bash
# mimgnet / taml_gamma: see runfiles/experiment.sh. Extra flags pass through to main.py.
exec "$(dirname "$0")/experiment.sh" mimgnet taml_gamma "$@"
