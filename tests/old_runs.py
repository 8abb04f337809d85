"""Run folders in the format taml wrote before the restructure (commit 11d8061), made by
this script rather than kept as binary files.

Everything the old code wrote is spelled out here: the file names, every key of
``config.json`` (in the old order), every key of the checkpoints and of the dicts nested in
them (random states, optimizer state, histories), the CSV headers, rows and line endings,
and the JSON files of validation, evaluation, weights and tests. The model weights are
listed by name and shape and filled from an explicit ``torch.Generator``; nothing is built
by taml's own writers (its dataset generators make the tiny data root, which is data, not
run format). So a change of the run format breaks the tests of ``test_old_runs.py`` instead
of silently changing these folders too.

Each folder is a tiny run on the embedded datasets that the old code would have left after
being killed mid-run and then tested:

- ``write_episodic_run``: ``--mode meta_train`` (MAML, or Bayesian TAML with all four
  switches) with :data:`EPISODIC_FLAGS`, killed during iteration 4: ``checkpoint.pt`` and
  ``best.pt`` at iteration 2, ``validation.json`` of iteration 2, ``train_metrics.csv``
  rows 1-3 (row 3 logged after the last checkpoint), then ``--mode meta_test`` on it
  (``test_step1_mc0.json`` / ``.log``).
- ``write_biased_run``: ``--mode train --method erm`` with :data:`BIASED_FLAGS`, killed
  during step 4: ``checkpoint.pt`` at step 2, ``eval.json`` of step 2, ``weights.json``
  and ``train_metrics.csv`` of steps 1-3, then ``--mode test`` (``test.json``).

The folders hold no PNG files (balancing plots, confusion matrix): nothing reads them.

As a script, ``python tests/old_runs.py OUT`` writes ``OUT/data`` and the runs
``OUT/runs/{maml,taml,erm}``, and prints the commands that use them; run it with the old
code first on ``PYTHONPATH`` to check the folders against 11d8061 itself.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

SEED = 0  # the runs' --seed
WEIGHT_SEED = 20240611  # the generator that fills every tensor of the checkpoints

# --- the data root ---------------------------------------------------------------------

# tiny embedded datasets: synthetic (glyph classes 0-3 train, 4-6 valid, 7-10 test) and
# synthetic_ood (texture classes 0-2 valid, 3-6 test), 8 images per class; glyphs in full
SYNTHETIC_SPLITS = {"train": 4, "valid": 3, "test": 4}
SYNTHETIC_OOD_SPLITS = {"valid": 3, "test": 4}
IMAGES_PER_CLASS = 8


def write_data_root(root: Path | str) -> Path:
    """The data root of the fixture's runs (the old and the new generators agree)."""
    from taml.data.classification import generate_glyphs
    from taml.data.synthetic import generate_synthetic

    root = Path(root)
    generate_synthetic("synthetic", root, images_per_class=IMAGES_PER_CLASS,
                       splits=SYNTHETIC_SPLITS, progress=False)
    generate_synthetic("synthetic_ood", root, images_per_class=IMAGES_PER_CLASS,
                       splits=SYNTHETIC_OOD_SPLITS, progress=False)
    generate_glyphs(root)
    return root


# --- helpers: tensors, random states, files ---------------------------------------------

def _filled(generator: torch.Generator, shape: tuple[int, ...], scale: float) -> torch.Tensor:
    return (scale * torch.randn(shape, generator=generator)).to(torch.float32)


def _pcg64_state(rng: np.random.Generator) -> dict:
    """numpy's PCG64 state dict, as ``Generator.bit_generator.state`` gives and takes it."""
    state = rng.bit_generator.state
    return {"bit_generator": "PCG64",
            "state": {"state": state["state"]["state"], "inc": state["state"]["inc"]},
            "has_uint32": state["has_uint32"], "uinteger": state["uinteger"]}


def _torch_state(seed: int, draws: int) -> torch.Tensor:
    """A CPU torch generator's state (uint8 [5056]) after ``draws`` normal draws."""
    generator = torch.Generator().manual_seed(seed)
    torch.randn(draws, generator=generator)
    return generator.get_state()


def _write_json(path: Path, obj) -> None:
    # the old write_json_atomic: indent 2, a final newline
    path.write_text(json.dumps(obj, indent=2, allow_nan=False) + "\n")


def _write_lines(path: Path, lines: list[str], ending: str) -> None:
    path.write_bytes("".join(line + ending for line in lines).encode("utf-8"))


# --- the episodic family (--mode meta_train / meta_test) --------------------------------

SWITCHES = {"maml": [], "taml": ["--alpha_on", "--omega_on", "--gamma_on", "--z_on"]}

# the command the fixture's runs were made with (plus --savedir, --data_root, SWITCHES)
EPISODIC_FLAGS = ["--way", "3", "--max_shot", "2", "--query", "2", "--n_steps", "1",
                  "--metabatch", "1", "--n_train_iters", "4", "--save_freq", "2",
                  "--val_freq", "2", "--log_freq", "1", "--n_val_episodes", "2",
                  "--n_test_episodes", "6", "--no_progress", "--device", "cpu",
                  "--id_dataset", "synthetic", "--ood_dataset", "synthetic_ood"]
EPISODIC_ITERATION = 2  # of checkpoint.pt and best.pt
EPISODIC_LOGGED = 3  # the last row of train_metrics.csv (logged after the checkpoint)


def episodic_config(method: str, savedir: Path | str, data_root: Path | str) -> dict:
    """The checkpoints' "config" as 11d8061 saved it (``Config.to_dict()``: every key, in
    order, tuples for the dataset lists); config.json is its JSON (lists)."""
    on = method == "taml"
    return {
        "mode": "meta_train",
        "gpu_id": 0,
        "device": "cpu",
        "savedir": str(savedir),
        "save_freq": 2,
        "n_train_iters": 4,
        "n_test_episodes": 6,
        "id_dataset": ("synthetic",),
        "ood_dataset": ("synthetic_ood",),
        "way": 3,
        "max_shot": 2,
        "query": 2,
        "n_steps": 1,
        "inner_lr": 0.5,
        "metabatch": 1,
        "meta_lr": 0.001,
        "alpha_on": on,
        "omega_on": on,
        "gamma_on": on,
        "z_on": on,
        "n_mc_samples": 0,
        "seed": SEED,
        "data_root": str(data_root),
        "image_size": None,
        "sampler_mode": "both",
        "first_order": False,
        "val_freq": 2,
        "n_val_episodes": 2,
        "print_freq": 1000,
        "log_freq": 1,
        "task_batching": "auto",
        "progress": False,
        "shards": 1,
        "tensorboard": False,
        "kl_normaliser": "task",
        "n_val_mc_samples": 0,
        "precision": "fp32",
    }


# the learner's state_dict for --way 3 on 32-pixel images (conv4, 32 channels, 128
# features): its own buffers first (the zero classifier the inner loop starts from), then
# the parameters in the order of learner.parameters(), which numbers the optimizer's state
LEARNER_BUFFERS = [("dense_w", (128, 3)), ("dense_b", (3,))]
MAML_PARAMETERS = [
    ("theta.conv1_b", (32,)), ("theta.conv1_w", (32, 3, 3, 3)),
    ("theta.conv2_b", (32,)), ("theta.conv2_w", (32, 32, 3, 3)),
    ("theta.conv3_b", (32,)), ("theta.conv3_w", (32, 32, 3, 3)),
    ("theta.conv4_b", (32,)), ("theta.conv4_w", (32, 32, 3, 3)),
    ("bn_shifts.bn1", (32,)), ("bn_shifts.bn2", (32,)), ("bn_shifts.bn3", (32,)),
    ("bn_shifts.bn4", (32,)),
]
META_SGD_PARAMETERS = [  # --alpha_on: one step size per entry (dense: one per column)
    ("alpha.conv1_b", (32,)), ("alpha.conv1_w", (32, 3, 3, 3)),
    ("alpha.conv2_b", (32,)), ("alpha.conv2_w", (32, 32, 3, 3)),
    ("alpha.conv3_b", (32,)), ("alpha.conv3_w", (32, 32, 3, 3)),
    ("alpha.conv4_b", (32,)), ("alpha.conv4_w", (32, 32, 3, 3)),
    ("alpha.dense_b_column", (1,)), ("alpha.dense_w_column", (128, 1)),
]
INFERENCE_PARAMETERS = [  # --omega_on --gamma_on --z_on: the inference network
    ("inference.conv1.weight", (10, 3, 3, 3)), ("inference.conv1.bias", (10,)),
    ("inference.conv2.weight", (10, 10, 3, 3)), ("inference.conv2.bias", (10,)),
    ("inference.encode1.weight", (64, 640)), ("inference.encode1.bias", (64,)),
    ("inference.interact1.weight", (4, 3)), ("inference.interact1.bias", (4,)),
    ("inference.encode2a.weight", (128, 256)), ("inference.encode2a.bias", (128,)),
    ("inference.encode2b.weight", (32, 128)), ("inference.encode2b.bias", (32,)),
    ("inference.interact2.weight", (4, 3)), ("inference.interact2.bias", (4,)),
    ("inference.omega.hidden.weight", (64, 256)), ("inference.omega.hidden.bias", (64,)),
    ("inference.omega.mean.weight", (1, 64)), ("inference.omega.mean.bias", (1,)),
    ("inference.omega.pre_std.weight", (1, 64)), ("inference.omega.pre_std.bias", (1,)),
    ("inference.gamma.hidden.weight", (64, 128)), ("inference.gamma.hidden.bias", (64,)),
    ("inference.gamma.mean.weight", (5, 64)), ("inference.gamma.mean.bias", (5,)),
    ("inference.gamma.pre_std.weight", (5, 64)), ("inference.gamma.pre_std.bias", (5,)),
    ("inference.z.hidden.weight", (64, 128)), ("inference.z.hidden.bias", (64,)),
    ("inference.z.mean.weight", (256, 64)), ("inference.z.mean.bias", (256,)),
    ("inference.z.pre_std.weight", (256, 64)), ("inference.z.pre_std.bias", (256,)),
]


def learner_parameters(method: str) -> list[tuple[str, tuple[int, ...]]]:
    extra = META_SGD_PARAMETERS + INFERENCE_PARAMETERS if method == "taml" else []
    return MAML_PARAMETERS + extra


def _learner_state(method: str, generator: torch.Generator) -> dict:
    state = {name: torch.zeros(shape) for name, shape in LEARNER_BUFFERS}
    for name, shape in learner_parameters(method):
        if name.startswith("alpha."):
            state[name] = torch.full(shape, 0.01)  # Meta-SGD's steps near their start
        else:
            state[name] = _filled(generator, shape, 0.02)
    return state


def _adam_state(parameters: list[tuple[str, tuple[int, ...]]], step: int, lr: float,
                generator: torch.Generator) -> dict:
    """torch.optim.Adam's state_dict: step / exp_avg / exp_avg_sq per parameter index, for
    the parameters that had a gradient. Meta-SGD's conv steps had none in 11d8061's runs of
    one inner step (the classifier starts at zero, so the conv layers' first inner gradient
    is zero), and their checkpoints lack state for them."""
    state = {}
    for index, (name, shape) in enumerate(parameters):
        if name.startswith("alpha.conv"):
            continue
        state[index] = {"step": torch.tensor(float(step)),
                        "exp_avg": _filled(generator, shape, 1e-4),
                        "exp_avg_sq": _filled(generator, shape, 1e-4) ** 2}
    groups = [{"lr": lr, "betas": (0.9, 0.999), "eps": 1e-08, "weight_decay": 0,
               "amsgrad": False, "maximize": False, "foreach": None, "capturable": False,
               "differentiable": False, "fused": None, "decoupled_weight_decay": False,
               "params": list(range(len(parameters)))}]
    return {"state": state, "param_groups": groups}


def _episodic_classes() -> dict:
    """The checkpoints' "classes": dataset -> split -> class names when the run trained."""
    return {
        "synthetic": {"train": ["glyph_000", "glyph_001", "glyph_002", "glyph_003"],
                      "valid": ["glyph_004", "glyph_005", "glyph_006"],
                      "test": ["glyph_007", "glyph_008", "glyph_009", "glyph_010"]},
        "synthetic_ood": {"valid": ["texture_000", "texture_001", "texture_002"],
                          "test": ["texture_003", "texture_004", "texture_005",
                                   "texture_006"]},
    }


def _episodic_validation(method: str) -> list[dict]:
    predictor = "posterior means" if method == "taml" else "deterministic"
    return [{"iteration": 2, "id": {"synthetic": 41.66666793823242},
             "ood": {"synthetic_ood": 58.333335876464844}, "predictor": predictor,
             "score": 100.00000381469727}]


# train_metrics.csv: the csv module's rows, "\r\n" line endings
EPISODIC_CSV_HEADER = "iteration,cross_entropy,kl,accuracy,seconds_per_iter"
EPISODIC_CSV_ROWS = {
    "maml": ["1,5.789812088012695,0.0,0.5,0.11023199499986367",
             "2,11.369140625,0.0,0.3333333432674408,0.029735912997420415",
             "3,15.089630126953125,0.0,0.3333333432674408,0.021573003998491913"],
    "taml": ["1,1.1107228994369507,2.5616188049316406,0.3333333432674408,0.036248100994271226",
             "2,1.108556866645813,2.807251453399658,0.3333333432674408,0.026493663011933677",
             "3,1.0809128284454346,2.7961647510528564,0.3333333432674408,0.020600701987859793"],
}
# the meta-test result the fixture holds (report.md shows these, rounded to 2 places)
EPISODIC_TEST = {"id": (36.1111119389534, 4.970074762603616),
                 "ood": (94.44444378217061, 6.286703680609316)}


def write_episodic_run(savedir: Path | str, data_root: Path | str,
                       method: str = "taml") -> Path:
    """An episodic run folder in 11d8061's format (see the module's docstring)."""
    if method not in SWITCHES:
        raise ValueError(f"method is one of {sorted(SWITCHES)}, not {method!r}")
    savedir = Path(savedir)
    savedir.mkdir(parents=True, exist_ok=True)
    config = episodic_config(method, savedir, data_root)
    generator = torch.Generator().manual_seed(WEIGHT_SEED)
    learner = _learner_state(method, generator)
    episodes = np.random.default_rng([SEED, 0])  # RandomStreams.from_seed, shard 0
    episodes.integers(0, 100, size=11)  # moved on by the episodes of iterations 1-2
    state = {
        "config": config,
        "learner": learner,
        "optimizer": _adam_state(learner_parameters(method), EPISODIC_ITERATION, 0.001,
                                 generator),
        "iteration": EPISODIC_ITERATION,
        # one entry per shard of the meta-batch: the training episodes' numpy stream and
        # the posterior samples' torch stream
        "random": [{"episodes": _pcg64_state(episodes),
                    "posterior": _torch_state(SEED, 13)}],
        "validation": _episodic_validation(method),
        "classes": _episodic_classes(),
        "changes": [],
    }
    torch.save(state, savedir / "checkpoint.pt")
    torch.save(state, savedir / "best.pt")  # validated at 2, the best score so far
    _write_json(savedir / "config.json", config)
    _write_json(savedir / "validation.json", _episodic_validation(method))
    _write_lines(savedir / "train_metrics.csv",
                 [EPISODIC_CSV_HEADER] + EPISODIC_CSV_ROWS[method], "\r\n")
    predictor = "posterior means" if method == "taml" else "deterministic"
    rows = [row.split(",") for row in EPISODIC_CSV_ROWS[method]]
    train = [f"train  iter {r[0]}: cross-entropy {float(r[1]):.4f}, kl {float(r[2]):.4f}, "
             f"acc {100 * float(r[3]):.2f} ({float(r[4]):.2f} s/iter)" for r in rows]
    _write_lines(savedir / "train.log",
                 [json.dumps(config), train[0], train[1],
                  "val    iter 2: id/synthetic acc 41.67, ood/synthetic_ood acc 58.33 "
                  f"(score 100.00, {predictor})", train[2]], "\n")
    (id_acc, id_ci), (ood_acc, ood_ci) = EPISODIC_TEST["id"], EPISODIC_TEST["ood"]
    _write_json(savedir / "test_step1_mc0.json", {
        "checkpoint": "best.pt", "iteration": EPISODIC_ITERATION, "n_steps": 1,
        "n_mc_samples": 0,
        "results": [{"role": "id", "dataset": "synthetic", "accuracy": id_acc,
                     "ci95": id_ci, "n_episodes": 6},
                    {"role": "ood", "dataset": "synthetic_ood", "accuracy": ood_acc,
                     "ci95": ood_ci, "n_episodes": 6}]})
    _write_lines(savedir / "test_step1_mc0.log",
                 ["Meta-test model at iteration 2 (best.pt: best validation score)",
                  f"id/synthetic acc: {id_acc:.2f} +- {id_ci:.2f}",
                  f"ood/synthetic_ood acc: {ood_acc:.2f} +- {ood_ci:.2f}"], "\n")
    (savedir / ".lock").write_text("")  # the old RunLock's file, emptied on exit
    return savedir


def episodic_argv(mode: str, savedir: Path | str, data_root: Path | str,
                  method: str = "taml", *extra: str) -> list[str]:
    """The fixture's command line for ``--mode mode``, with ``extra`` flags last."""
    return ["--mode", mode, "--savedir", str(savedir), "--data_root", str(data_root),
            *EPISODIC_FLAGS, *SWITCHES[method], *extra]


# --- the biased-data family (--mode train / test) ----------------------------------------

BIASED_FLAGS = ["--method", "erm", "--batch_size", "8", "--meta_batch_size", "6",
                "--network", "lenet_tml", "--lr", "0.05", "--lr_schedule", "",
                "--steps", "4", "--log_every", "1", "--eval_every", "2",
                "--save_every", "2", "--no_progress", "--device", "cpu"]
BIASED_STEP = 2  # of checkpoint.pt
BIASED_LOGGED = 3  # the last row of train_metrics.csv
# glyphs, long_tail, imbalance factor 100: the training counts per class; 10 x 10 meta
# images, 10 x 100 test images
GLYPH_TRAIN_COUNTS = [490, 293, 176, 105, 63, 37, 22, 13, 8, 4]
GLYPH_META = 100
GLYPH_TEST = 1000


def biased_config(savedir: Path | str, data_root: Path | str) -> dict:
    """The checkpoint's "config" as 11d8061 saved it (``BiasedConfig.to_dict()``: every key,
    in order, tuples for the label pair and the milestones); config.json is its JSON."""
    return {
        "mode": "train",
        "method": "erm",
        "dataset": "glyphs",
        "bias": "long_tail",
        "imbalance_factor": 100.0,
        "ratio": 0.995,
        "binary_classes": (2, 3),
        "n_train": 5000,
        "binary_protocol": "tml",
        "noise_type": "uniform",
        "noise_rate": 0.4,
        "meta_per_class": 10,
        "image_size": None,
        "augment": "auto",
        "network": "lenet_tml",
        "batch_size": 8,
        "meta_batch_size": 6,
        "epochs": 100,
        "steps": 4,
        "lr": 0.05,
        "lr_schedule": (),
        "lr_factor": 0.1,
        "momentum": 0.9,
        "nesterov": False,
        "weight_decay": 0.0005,
        "meta_lr": 0.001,
        "meta_every": 1,
        "lookahead_lr": None,
        "focal_gamma": 1.0,
        "mwnet_hidden": 100,
        "meta_optimizer": "adam",
        "tml_scale": "simplex",
        "mwnet_weights": "mean",
        "color_var": 0.02,
        "lnl_lambda": 0.01,
        "grl_factor": 0.1,
        "pretrain_epochs": 0,
        "gray": False,
        "eval_every": 2,
        "log_every": 1,
        "save_every": 2,
        "seed": SEED,
        "device": "cpu",
        "gpu_id": 0,
        "savedir": str(savedir),
        "data_root": str(data_root),
        "progress": False,
        "family": "biased",
    }


# lenet_tml for 10 classes of 3 x 32 x 32 images: state_dict = parameters, in order
LENET_PARAMETERS = [
    ("features.0.weight", (6, 3, 5, 5)), ("features.0.bias", (6,)),
    ("features.3.weight", (16, 6, 5, 5)), ("features.3.bias", (16,)),
    ("classifier.0.weight", (120, 400)), ("classifier.0.bias", (120,)),
    ("classifier.2.weight", (84, 120)), ("classifier.2.bias", (84,)),
    ("classifier.4.weight", (10, 84)), ("classifier.4.bias", (10,)),
]
BIASED_CSV_HEADER = "step,epoch,loss,accuracy,lr,seconds"  # "\n" line endings
BIASED_CSV_ROWS = ["1,1,2.26767,0,0.05,0.01347", "2,1,2.24744,0.125,0.05,0.00471",
                   "3,1,2.22268,0.375,0.05,0.1275"]
BIASED_TEST_ACCURACY = 0.237  # of the step-2 model, balanced too (report.md: 23.70)
BIASED_EVAL = [{"step": 2, "accuracy": BIASED_TEST_ACCURACY,
                "balanced_accuracy": BIASED_TEST_ACCURACY, "tail_recall": 0.0}]


def _index_stream(n: int, seed_words: list[int], position: int) -> dict:
    """batches.IndexStream's state: its rng after the first pass's permutation, the order
    of that pass and the position in it."""
    rng = np.random.default_rng(seed_words)
    order = rng.permutation(n)
    return {"rng": _pcg64_state(rng), "order": order, "position": position}


def write_biased_run(savedir: Path | str, data_root: Path | str) -> Path:
    """A biased-data run folder in 11d8061's format (see the module's docstring)."""
    savedir = Path(savedir)
    savedir.mkdir(parents=True, exist_ok=True)
    config = biased_config(savedir, data_root)
    generator = torch.Generator().manual_seed(WEIGHT_SEED + 1)
    model = {}
    for name, shape in LENET_PARAMETERS:
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 100
        model[name] = _filled(generator, shape, fan_in ** -0.5)
    optimizer = {  # torch.optim.SGD's state_dict
        "state": {index: {"momentum_buffer": _filled(generator, shape, 1e-3)}
                  for index, (_, shape) in enumerate(LENET_PARAMETERS)},
        "param_groups": [{"lr": 0.05, "momentum": 0.9, "dampening": 0, "weight_decay": 0.0005,
                          "nesterov": False, "maximize": False, "foreach": None,
                          "differentiable": False, "fused": None,
                          "params": list(range(len(LENET_PARAMETERS)))}],
    }
    history = [{"step": s, "class_weights": None} for s in range(1, BIASED_LOGGED + 1)]
    augmentation = int(np.random.SeedSequence([SEED, 12]).generate_state(1)[0])
    state = {
        "config": config,
        "model": model,
        "optimizer": optimizer,
        "method": {},  # ERM learns nothing besides the model
        "step": BIASED_STEP,
        "random": {
            "batches": {
                "train_order": _index_stream(sum(GLYPH_TRAIN_COUNTS), [SEED, 10],
                                             BIASED_STEP * 8),
                "meta_order": _index_stream(GLYPH_META, [SEED, 11], 0),
                "augmentation": _torch_state(augmentation, 0),
            },
            "global": [{"torch": _torch_state(SEED + 13, 5)}],  # one per rank
        },
        "eval": BIASED_EVAL,
        "weights": history[:BIASED_STEP],
    }
    torch.save(state, savedir / "checkpoint.pt")
    _write_json(savedir / "config.json", config)
    _write_json(savedir / "eval.json", BIASED_EVAL)
    _write_json(savedir / "weights.json", {
        "history": history, "weight_curve": None, "train_counts": GLYPH_TRAIN_COUNTS,
        "corrupted_share": 0.0})
    _write_lines(savedir / "train_metrics.csv", [BIASED_CSV_HEADER] + BIASED_CSV_ROWS, "\n")
    recall = [1.0, 0.9, 0.2, 0.25, 0.02, 0.0, 0.0, 0.0, 0.0, 0.0]
    _write_json(savedir / "test.json", {
        "method": "erm", "dataset": "glyphs", "bias": "long_tail",
        "accuracy": BIASED_TEST_ACCURACY, "balanced_accuracy": BIASED_TEST_ACCURACY,
        "per_class_recall": recall, "tail_recall": 0.0, "tail_classes": [9, 8, 7],
        "n_test": GLYPH_TEST, "train_counts": GLYPH_TRAIN_COUNTS,
        "checkpoint": str(savedir / "checkpoint.pt"), "step": BIASED_STEP})
    rows = [row.split(",") for row in BIASED_CSV_ROWS]
    train = [f"train  step {r[0]} (epoch {r[1]}): loss {float(r[2]):.4f}, acc "
             f"{100 * float(r[3]):.2f}, lr {float(r[4]):.4g} ({float(r[5]):.3f} s/step)"
             for r in rows]
    _write_lines(savedir / "train.log", [
        json.dumps(config),
        f"data: {sum(GLYPH_TRAIN_COUNTS)} train ({tuple(GLYPH_TRAIN_COUNTS)} per class), "
        f"{GLYPH_META} meta, {GLYPH_TEST} test; 151 steps per epoch, 4 steps",
        train[0], train[1],
        "eval   step 2: accuracy 23.70, balanced 23.70, tail recall 0.00",
        train[2],
        f"test   step 2: accuracy 23.70, balanced accuracy 23.70, tail recall 0.00 "
        f"({GLYPH_TEST} test images)",
        f"wrote {savedir / 'test.json'}, confusion.png"], "\n")
    (savedir / ".lock").write_text("")
    return savedir


def biased_argv(mode: str, savedir: Path | str, data_root: Path | str,
                *extra: str) -> list[str]:
    """The fixture's command line for ``--mode mode``, with ``extra`` flags last."""
    return ["--mode", mode, "--savedir", str(savedir), "--data_root", str(data_root),
            *BIASED_FLAGS, *extra]


def write_all(out: Path | str) -> dict[str, Path]:
    """``out/data`` and the runs ``out/runs/{maml,taml,erm}``."""
    out = Path(out)
    data_root = write_data_root(out / "data")
    runs = {method: write_episodic_run(out / "runs" / method, data_root, method)
            for method in SWITCHES}
    runs["erm"] = write_biased_run(out / "runs" / "erm", data_root)
    return {"data": data_root, **runs}


def _shell(argv: list[str]) -> str:
    import shlex

    return " ".join(shlex.quote(a) for a in ["python", "main.py", *argv])


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/old_runs.py OUT_FOLDER")
    made = write_all(sys.argv[1])
    data = made["data"]
    for method in SWITCHES:
        run = made[method]
        print(_shell(episodic_argv("meta_test", run, data, method)))
        print(_shell(episodic_argv("meta_train", run, data, method, "--n_train_iters", "5")))
    print(_shell(biased_argv("test", made["erm"], data)))
    print(_shell(biased_argv("train", made["erm"], data, "--steps", "6")))
    print(_shell(["--mode", "report", "--savedir", str(Path(sys.argv[1]) / "runs"),
                  "--out", str(Path(sys.argv[1]) / "report"), "--no_progress"]))
