#!/usr/bin/env bash
# Meta-train, then meta-test, one experiment of the paper (the original's runfiles).
#   runfiles/experiment.sh SETTING METHOD [--seeds 0,1,2] [more main.py flags, e.g. --device cpu]
# SETTING: cifar (CIFAR-FS / SVHN), mimgnet (miniImageNet / CUB),
#          multi (Aircraft, Quickdraw, VGG-Flower / Traffic, Fashion-MNIST)
# METHOD:  maml | msgd | taml | taml_omega | taml_gamma | taml_z
#          (the ablations: Meta-SGD plus one balancing variable, as the original README
#          suggests: keep --alpha_on and one of --omega_on --gamma_on --z_on)
# --seeds 0,1,2 (default 0; --seed K = --seeds K): each seed runs in <savedir>/seed<k>
# (savedir: ./results/SETTING/METHOD, or --savedir); a seed whose test JSON exists is
# skipped, an unfinished one resumes (meta_train continues from its last checkpoint).
# `python main.py --mode report --savedir results/` then tables the seeds.
set -euo pipefail
cd "$(dirname "$0")/.."
setting=${1:?usage: runfiles/experiment.sh SETTING METHOD [flags]}
method=${2:?usage: runfiles/experiment.sh SETTING METHOD [flags]}
shift 2
source "runfiles/seeds.sh"
parse_seed_flags "./results/$setting/$method" "$@"
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || { bash scripts/install.sh; PY=.venv/bin/python; }

case "$setting" in
  cifar)   data=(--id_dataset cifar --ood_dataset svhn --way 5)
           train=(--metabatch 4 --n_train_iters 50000 --meta_lr 1e-3) ;;
  mimgnet) data=(--id_dataset mimgnet --ood_dataset cub --way 5)
           train=(--metabatch 1 --n_train_iters 80000 --meta_lr 1e-4) ;;
  multi)   data=(--id_dataset "aircraft,quickdraw,vgg_flower"
                 --ood_dataset "traffic,fashion-mnist" --way 10)
           train=(--metabatch 3 --n_train_iters 60000 --meta_lr 1e-3) ;;
  *) echo "unknown setting '$setting': cifar, mimgnet or multi" >&2; exit 2 ;;
esac
# the original's MAML on miniImageNet uses inner_lr 0.1; everything else the default 0.5
inner=()
[ "$setting" = mimgnet ] && [ "$method" = maml ] && inner=(--inner_lr 0.1)
mc=()
case "$method" in
  maml)       switches=() ;;
  msgd)       switches=(--alpha_on) ;;
  taml)       switches=(--alpha_on --omega_on --gamma_on --z_on); mc=(--n_mc_samples 10) ;;
  taml_omega) switches=(--alpha_on --omega_on); mc=(--n_mc_samples 10) ;;
  taml_gamma) switches=(--alpha_on --gamma_on); mc=(--n_mc_samples 10) ;;
  taml_z)     switches=(--alpha_on --z_on); mc=(--n_mc_samples 10) ;;
  *) echo "unknown method '$method'" >&2; exit 2 ;;
esac
for seed in $SEEDS; do
  savedir="$BASE/seed$seed"
  seed_finished "$seed" "$savedir/test_step10_mc${mc[1]:-0}.json" && continue
  common=(--savedir "$savedir" --seed "$seed" "${data[@]}" --max_shot 50 --query 15
          "${inner[@]}" "${switches[@]}" ${FLAGS[@]+"${FLAGS[@]}"})
  "$PY" main.py --mode meta_train "${common[@]}" "${train[@]}" --n_steps 5
  "$PY" main.py --mode meta_test "${common[@]}" --metabatch "${train[1]}" --n_steps 10 \
    --n_test_episodes 1000 ${mc[@]+"${mc[@]}"}
done
