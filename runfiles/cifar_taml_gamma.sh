#!/usr/bin/env bash
# cifar / taml_gamma: see runfiles/experiment.sh. Extra flags pass through to main.py.
exec "$(dirname "$0")/experiment.sh" cifar taml_gamma "$@"
