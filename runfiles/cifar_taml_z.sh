#!/usr/bin/env bash
# cifar / taml_z: see runfiles/experiment.sh. Extra flags pass through to main.py.
exec "$(dirname "$0")/experiment.sh" cifar taml_z "$@"
