#!/usr/bin/env bash
# cifar / maml: see runfiles/experiment.sh. Extra flags pass through to main.py.
exec "$(dirname "$0")/experiment.sh" cifar maml "$@"
