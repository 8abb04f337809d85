#!/usr/bin/env bash
# Train and test one method on one of the biased-data papers' experiments.
#   runfiles/biased.sh EXPERIMENT METHOD [--seeds 0,1,2] [more main.py flags, e.g. --device cpu]
# EXPERIMENT: tml-mnist23 | l2rw-mnist49 | l2rw-cifar10-noise40 | mwnet-cifar10-lt100 |
#             mwnet-cifar10-lt10 | mwnet-cifar100-lt100 | mwnet-cifar100-lt10 |
#             mwnet-cifar10-noise40
# METHOD:     erm | class_balanced | focal | tml | l2rw | mwnet
# Schedules are the official code's (each paper's released code); every method of
# an experiment runs with the same schedule, as the papers' comparisons should.
# --seeds 0,1,2 (default 0): each seed in <savedir>/seed<k> (savedir:
# ./results/biased/EXPERIMENT/METHOD, or --savedir); a seed whose test.json exists is skipped,
# an unfinished one resumes. Results: <savedir>/seed<k>/test.json.
set -euo pipefail
cd "$(dirname "$0")/.."
experiment=${1:?usage: runfiles/biased.sh EXPERIMENT METHOD [flags]}
method=${2:?usage: runfiles/biased.sh EXPERIMENT METHOD [flags]}
shift 2
source "runfiles/seeds.sh"
parse_seed_flags "./results/biased/$experiment/$method" "$@"
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || { bash scripts/install.sh; PY=.venv/bin/python; }

# long-tailed CIFAR, MW-Net's class-imbalance script: ResNet-32, 100 epochs, x0.1 at 80, 90
long_tail=(--bias long_tail --meta_per_class 10 --network resnet32 --batch_size 100
           --meta_batch_size 100 --lr 0.1 --momentum 0.9 --nesterov --weight_decay 5e-4
           --epochs 100 --lr_schedule 80,90 --eval_every 1000 --save_every 1000)
# V: the "stable" script's Adam 1e-3 everywhere. The class-imbalance script's SGD 1e-5 goes
# with weights normalised to sum 1 per batch; taml's MW-Net (the stable script's form) does
# not normalise, and at 1e-5 its V would barely move.
mwnet_meta=(--meta_optimizer adam --meta_lr 1e-3)
case "$experiment" in
  # TML (main.py defaults): LeNet, batch 50, target batch 10, lr 0.01, wd 2e-3, 8000 steps;
  # lr x0.1 at epochs 91, 136, 182 (100 steps per epoch: after the 8000 steps)
  tml-mnist23)
    data=(--dataset mnist --bias binary --binary_classes 2,3 --ratio 0.995 --n_train 5000
          --meta_per_class 10 --binary_protocol tml)
    train=(--network lenet_tml --batch_size 50 --meta_batch_size 10 --lr 0.01 --momentum 0.9
           --weight_decay 2e-3 --steps 8000 --lr_schedule 9100,13600,18200
           --eval_every 1000 --save_every 1000 --log_every 100)
    tml_meta=(--meta_lr 0.1 --meta_every 10 --lookahead_lr 0.01) ;;
  # L2RW MNIST: its LeNet, batch 100, 5 + 5 clean images, lr 1e-3 halved at half time
  l2rw-mnist49)
    data=(--dataset mnist --bias binary --binary_classes 4,9 --ratio 0.995 --n_train 5000
          --meta_per_class 5 --binary_protocol l2rw)
    train=(--network lenet_l2rw --batch_size 100 --meta_batch_size 10 --lr 1e-3
           --momentum 0.9 --weight_decay 0 --steps 8000 --lr_schedule 4000 --lr_factor 0.5
           --eval_every 1000 --save_every 1000 --log_every 100)
    tml_meta=(--meta_lr 0.1 --meta_every 10) ;;
  # L2RW CIFAR-10 UniformFlip 40%: WRN-28-10, 1000 clean images, 60K steps, x0.1 at 40K, 50K
  l2rw-cifar10-noise40)
    data=(--dataset cifar10 --bias noise --noise_type uniform --noise_rate 0.4
          --meta_per_class 100)
    train=(--network wrn28_10 --batch_size 100 --meta_batch_size 100 --lr 0.1 --momentum 0.9
           --weight_decay 2e-4 --steps 60000 --lr_schedule 40000,50000 --eval_every 2000
           --save_every 2000)
    tml_meta=(--meta_lr 0.1 --meta_every 10) ;;
  mwnet-cifar10-lt100)  data=(--dataset cifar10 --imbalance_factor 100); train=("${long_tail[@]}")
                        tml_meta=(--meta_lr 0.1 --meta_every 10) ;;
  mwnet-cifar10-lt10)   data=(--dataset cifar10 --imbalance_factor 10); train=("${long_tail[@]}")
                        tml_meta=(--meta_lr 0.1 --meta_every 10) ;;
  mwnet-cifar100-lt100) data=(--dataset cifar100 --imbalance_factor 100); train=("${long_tail[@]}")
                        tml_meta=(--meta_lr 0.1 --meta_every 10) ;;
  mwnet-cifar100-lt10)  data=(--dataset cifar100 --imbalance_factor 10); train=("${long_tail[@]}")
                        tml_meta=(--meta_lr 0.1 --meta_every 10) ;;
  # MW-Net uniform noise 40%: WRN-28-10 (its table's network and schedule: 20K iterations,
  # x0.1 at 18K, 19K), 1000 clean meta images
  mwnet-cifar10-noise40)
    data=(--dataset cifar10 --bias noise --noise_type uniform --noise_rate 0.4
          --meta_per_class 100)
    train=(--network wrn28_10 --batch_size 100 --meta_batch_size 100 --lr 0.1 --momentum 0.9
           --nesterov --weight_decay 5e-4 --steps 20000 --lr_schedule 18000,19000
           --eval_every 1000 --save_every 1000)
    tml_meta=(--meta_lr 0.1 --meta_every 10) ;;
  *) echo "unknown experiment '$experiment' (see runfiles/biased.sh)" >&2; exit 2 ;;
esac
case "$method" in
  erm|class_balanced|focal|l2rw) meta=() ;;
  tml)   meta=("${tml_meta[@]}") ;;
  mwnet) meta=("${mwnet_meta[@]}") ;;
  *) echo "unknown method '$method': erm, class_balanced, focal, tml, l2rw or mwnet" >&2
     exit 2 ;;
esac
for seed in $SEEDS; do
  savedir="$BASE/seed$seed"
  seed_finished "$seed" "$savedir/test.json" && continue
  "$PY" main.py --mode train --method "$method" --savedir "$savedir" --seed "$seed" \
    "${data[@]}" "${train[@]}" ${meta[@]+"${meta[@]}"} ${FLAGS[@]+"${FLAGS[@]}"}
done
