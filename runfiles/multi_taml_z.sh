#!/usr/bin/env bash
# multi / taml_z: see runfiles/experiment.sh. Extra flags pass through to main.py.
exec "$(dirname "$0")/experiment.sh" multi taml_z "$@"
