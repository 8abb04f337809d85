#!/usr/bin/env bash
# multi / taml: see runfiles/experiment.sh. Extra flags pass through to main.py.
exec "$(dirname "$0")/experiment.sh" multi taml "$@"
