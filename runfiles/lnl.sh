#!/usr/bin/env bash
# Learning Not to Learn on Colored MNIST: one cell of the paper's table (trains, then writes test.json).
#   runfiles/lnl.sh SIGMA2 VARIANT [--seeds 0,1,2] [more main.py flags, e.g. --device cpu]
# SIGMA2:  the colour variance, 0.020 | 0.025 | 0.030 | 0.035 | 0.040 | 0.045 | 0.050
# VARIANT: baseline (plain f, g) | gray (trained and tested on grayscale) | lnl
# The authors' schedule (Kim et al., CVPR 2019, and their official code): SGD lr 0.01, momentum
# 0.9, weight decay 5e-4, batch 128, 100 epochs, lr x0.1 at epochs 40 and 80; LNL unlearns
# for 100 more epochs from the baseline's 100 (in one run), at lr 0.001 with the same
# schedule, lambda 0.01, reversal factor 0.1.
# Colored MNIST is made from MNIST on first use (python data/mnist/get_data.py first); it is
# not bit-identical with the authors' files (taml/data/colored.py says why).
# Results: ./results/biased/lnl-mnist-var<SIGMA2>/<VARIANT>/seed<k>/test.json (or --savedir);
# a seed whose test.json exists is skipped, an unfinished one resumes.
set -euo pipefail
cd "$(dirname "$0")/.."
var=${1:?usage: runfiles/lnl.sh SIGMA2 VARIANT [flags]}
variant=${2:?usage: runfiles/lnl.sh SIGMA2 VARIANT [flags]}
shift 2
source "runfiles/seeds.sh"
parse_seed_flags "./results/biased/lnl-mnist-var$var/$variant" "$@"
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || { bash scripts/install.sh; PY=.venv/bin/python; }

schedule=(--batch_size 128 --lr 0.01 --momentum 0.9 --weight_decay 5e-4 --lr_schedule 40,80
          --lr_factor 0.1 --eval_every 2340 --save_every 468 --log_every 100)
case "$variant" in
  baseline) flags=(--epochs 100 --lnl_lambda 0 --grl_factor 0) ;;
  gray)     flags=(--epochs 100 --gray) ;;
  lnl)      flags=(--pretrain_epochs 100 --epochs 100 --lnl_lambda 0.01 --grl_factor 0.1) ;;
  *) echo "unknown variant '$variant': baseline, gray or lnl" >&2; exit 2 ;;
esac
for seed in $SEEDS; do
  savedir="$BASE/seed$seed"
  seed_finished "$seed" "$savedir/test.json" && continue
  "$PY" main.py --mode train --method lnl --dataset mnist --color_var "$var" \
    --savedir "$savedir" --seed "$seed" "${schedule[@]}" "${flags[@]}" ${FLAGS[@]+"${FLAGS[@]}"}
done
