#!/usr/bin/env bash
# multi / taml_omega: see runfiles/experiment.sh. Extra flags pass through to main.py.
exec "$(dirname "$0")/experiment.sh" multi taml_omega "$@"
