"""The run configuration: one frozen dataclass, built once from the command line.

Flag names and defaults are the original code's (``haebeom-lee/l2b`` main.py); the flags it
lacked are marked "taml" in their help. Invalid combinations fail at parse time with a
message that says what to change.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, fields, replace

from taml.episodic.learners import method_name, switches_on
from taml.episodic.learners.bayesian_taml import DEFAULT_SIGMA_INIT, ORIGINAL_SIGMA_INIT
from taml.run.cli import OneLineParser
from taml.run.folder import RunDirError, expand_savedir
from taml.run.validate import (
    PRECISIONS,
    check_count,
    check_n_steps,
    check_number,
    check_precision,
    check_seed,
    check_sigma_init,
    check_way,
)

SAMPLER_MODES = {"both": 1, "class": 2, "task": 3}  # the original's modes 1/2/3
# N in each task's KL / (N + M): its real support size, or the padded support length of its
# meta-batch as the original (taml.episodic.learners.meta_learner.kl_support_sizes)
KL_NORMALISERS = ("task", "padded")
# --precision (PRECISIONS, the API's precision= too: taml/run/validate.py): the base learner's
# conv blocks in float32, or bfloat16 under autocast; the network maps each name to its
# dtype (taml.episodic.learners.conv4.PRECISIONS)
# --backbone: the base learner's body (taml.episodic.build.build_backbone): the paper's 4-conv
# net, or ResNet-12 (MetaOptNet / TADAM's 64-160-320-640)
BACKBONES = ("conv4", "resnet12")
# --head: the classifier each task starts from (taml.episodic.learners.meta_learner.HEADS):
# the original's zero, or a meta-learned initialisation (MAML's, learn2learn's); a user's
# module as the whole classifier ("backbone") is the Python API's alone
CLI_HEADS = ("zero", "learned")
# what config.json and the checkpoints say this config is (the biased family's: "biased")
FAMILY = "episodic"


@dataclass(frozen=True)
class Config:
    mode: str = "meta_train"
    gpu_id: int = 0
    device: str = "auto"
    savedir: str | None = None
    save_freq: int = 10000
    n_train_iters: int = 50000
    n_test_episodes: int = 1000
    id_dataset: tuple[str, ...] = ("cifar",)
    ood_dataset: tuple[str, ...] = ("svhn",)
    way: int = 5
    max_shot: int = 50
    query: int = 15
    n_steps: int = 5
    inner_lr: float = 0.5
    metabatch: int = 4
    meta_lr: float = 1e-3
    alpha_on: bool = False
    omega_on: bool = False
    gamma_on: bool = False
    z_on: bool = False
    n_mc_samples: int = 0
    # taml additions
    seed: int = 0
    data_root: str | None = None
    image_size: int | None = None
    sampler_mode: str = "both"
    first_order: bool = False
    val_freq: int = 10000
    n_val_episodes: int = 3000
    print_freq: int = 1000
    log_freq: int = 100
    task_batching: str = "auto"
    progress: bool = True
    shards: int = 0
    tensorboard: bool = False
    kl_normaliser: str = "task"
    n_val_mc_samples: int = 0
    precision: str = "fp32"
    sigma_init: float = DEFAULT_SIGMA_INIT  # the original's: ORIGINAL_SIGMA_INIT
    backbone: str = "conv4"
    head: str = "zero"
    # how to start, not what the run is: never in config.json or checkpoints
    force: bool = False

    @property
    def method(self) -> str:
        """A short name of the learner these switches make (for paths and tables): the
        learners' name table's (:func:`taml.episodic.learners.method_name`)."""
        return method_name(switches_on(self))

    @property
    def resolved_savedir(self) -> str:
        if self.savedir:
            return self.savedir
        return f"./results/{'+'.join(self.id_dataset)}/{self.method}"

    def to_dict(self) -> dict:
        """Every field, and ``"family": "episodic"`` (config.json, checkpoints): the report
        tells the families apart by it (a folder without it is an episodic one from before)."""
        values = asdict(self)
        del values["force"]  # how this command starts, not what the run is
        return {**values, "family": FAMILY}


def sigma_value(text: str) -> float:
    """``--sigma_init``: a σ, or ``original`` for the original's softplus(0) exactly."""
    return ORIGINAL_SIGMA_INIT if text == "original" else float(text)


def dataset_list(text: str) -> tuple[str, ...]:
    """``'aircraft, quickdraw'`` -> ``('aircraft', 'quickdraw')`` (the original's str2list).

    A comma inside a ``folder:PATH`` belongs to the path: a piece after a comma starts a new
    dataset only when it is a known dataset name or another ``folder:``."""
    from taml.data.registry import FOLDER_PREFIX, REGISTRY

    names: list[str] = []
    for part in text.split(","):
        piece = part.strip()
        starts_new = piece in REGISTRY or piece.startswith(FOLDER_PREFIX)
        if names and names[-1].startswith(FOLDER_PREFIX) and not starts_new:
            names[-1] += "," + part  # the folder's own name goes on, spaces and all
        elif piece:
            names.append(piece)
    names = [n.rstrip() for n in names]
    if not names:
        raise argparse.ArgumentTypeError("give at least one dataset name")
    return tuple(names)


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="main.py",
        description="MAML, Meta-SGD and Bayesian TAML on imbalanced and OOD few-shot tasks.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    d = Config()
    # the other modes are routed by main.py before this parser runs; they are listed here so
    # that `python main.py --help` shows every mode (each has its own `--mode X --help`)
    p.add_argument("--mode", choices=["meta_train", "meta_test"], default=d.mode,
                   help="meta_train | meta_test (this family's flags, below); also train | "
                        "test (learning from biased data: main.py --mode train --help) and "
                        "report (main.py --mode report --help)")
    p.add_argument("--gpu_id", type=int, default=d.gpu_id, help="CUDA device index")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default=d.device,
                   help="taml: auto = cuda:<gpu_id> when available, else cpu")
    p.add_argument("--savedir", default=d.savedir,
                   help="checkpoints, logs and results (default ./results/<id>/<method>)")
    p.add_argument("--save_freq", type=int, default=d.save_freq)
    p.add_argument("--n_train_iters", type=int, default=d.n_train_iters)
    p.add_argument("--n_test_episodes", type=int, default=d.n_test_episodes)
    p.add_argument("--n_test_episode", type=int, dest="n_test_episodes", help=argparse.SUPPRESS)
    p.add_argument("--id_dataset", type=dataset_list, default=d.id_dataset,
                   help="comma-separated in-distribution datasets, or folder:PATH")
    p.add_argument("--ood_dataset", type=dataset_list, default=d.ood_dataset,
                   help="comma-separated out-of-distribution datasets, or folder:PATH")
    p.add_argument("--way", type=int, default=d.way)
    p.add_argument("--max_shot", type=int, default=d.max_shot, help="shots are 1..max_shot")
    p.add_argument("--query", type=int, default=d.query, help="query images per class")
    p.add_argument("--n_steps", type=int, default=d.n_steps, help="inner gradient steps")
    p.add_argument("--inner_lr", type=float, default=d.inner_lr,
                   help="inner step size when --alpha_on is off")
    p.add_argument("--metabatch", type=int, default=d.metabatch, help="tasks per meta-batch")
    p.add_argument("--meta_lr", type=float, default=d.meta_lr, help="Adam's learning rate")
    p.add_argument("--alpha_on", action="store_true", help="Meta-SGD per-parameter step sizes")
    p.add_argument("--omega_on", action="store_true", help="ω: class-imbalance loss weights")
    p.add_argument("--gamma_on", action="store_true", help="γ: task-imbalance step scales")
    p.add_argument("--z_on", action="store_true", help="z: OOD modulation of the init")
    p.add_argument("--n_mc_samples", type=int, default=d.n_mc_samples,
                   help="meta-test posterior samples averaged (0 = posterior means)")
    p.add_argument("--kl_normaliser", choices=list(KL_NORMALISERS), default=d.kl_normaliser,
                   help="taml: N of each task's KL / (N + M): task = its real support size; "
                        "padded = the largest support size of its meta-batch (the "
                        "original's padded N)")
    p.add_argument("--sigma_init", type=sigma_value, default=d.sigma_init,
                   help="taml: σ of every posterior (ω, γ, z) at initialisation, or "
                        "'original' for the original's softplus(0) = log 2 (default "
                        f"{d.sigma_init:.3g}, which starts sooner: docs/studies.md)")
    p.add_argument("--n_val_mc_samples", type=int, default=d.n_val_mc_samples,
                   help="taml: posterior samples averaged by meta-train's validation, which "
                        "picks best.pt (0 = posterior means, the original's)")
    p.add_argument("--seed", type=int, default=d.seed, help="taml: seed of every generator")
    p.add_argument("--data_root", default=d.data_root,
                   help="taml: folder of the dataset stores (default: $TAML_DATA_ROOT, else data/ "
                        "in a checkout, else ~/.cache/taml/data)")
    p.add_argument("--image_size", type=int, default=d.image_size,
                   help="taml: image size of folder:PATH datasets (default 32)")
    p.add_argument("--sampler_mode", choices=list(SAMPLER_MODES), default=d.sampler_mode,
                   help="taml: imbalance of episodes: both (original mode 1), class (2), task (3)")
    p.add_argument("--first_order", action="store_true",
                   help="taml: first-order meta-gradients (less memory)")
    p.add_argument("--val_freq", type=int, default=d.val_freq,
                   help="taml: meta-validate every this many iterations")
    p.add_argument("--n_val_episodes", type=int, default=d.n_val_episodes,
                   help="taml: episodes per meta-validation and dataset")
    p.add_argument("--print_freq", type=int, default=d.print_freq,
                   help="taml: print the balancing-variable tables every this many iterations")
    p.add_argument("--log_freq", type=int, default=d.log_freq,
                   help="taml: log the training statistics every this many iterations")
    p.add_argument("--task_batching", choices=["auto", "vmap", "loop"], default=d.task_batching,
                   help="taml: tasks of a meta-batch together (vmap) or one by one (loop); "
                        "auto = vmap on GPU and for inputs of at most 16x16 pixels, loop "
                        "otherwise (docs/benchmarks.md)")
    p.add_argument("--precision", choices=list(PRECISIONS), default=d.precision,
                   help="taml: the base learner's conv blocks in float32, or in bfloat16 "
                        "under autocast (parameters, optimizer, inner-loop updates, "
                        "classifier and losses stay float32; docs/benchmarks.md)")
    p.add_argument("--backbone", choices=list(BACKBONES), default=d.backbone,
                   help="taml: the base learner: conv4 (the paper's 4-conv net) or resnet12 "
                        "(4 residual blocks, 64-160-320-640 channels, as MetaOptNet/TADAM)")
    p.add_argument("--head", choices=list(CLI_HEADS), default=d.head,
                   help="taml: the classifier each task starts from: zero (the original's, "
                        "not learned; the first inner step moves it alone, hence "
                        "--inner_lr 0.5) or learned (a meta-learned initialisation, as "
                        "MAML's paper and learn2learn; their usual --inner_lr is 0.1)")
    p.add_argument("--tensorboard", action="store_true",
                   help="taml: also log the training scalars and the balancing variables' "
                        "histograms to <savedir>/tensorboard (needs pip install tensorboard)")
    p.add_argument("--no_progress", dest="progress", action="store_false",
                   help="taml: no tqdm progress bars")
    p.add_argument("--force", action="store_true",
                   help="a new run in a --savedir that holds another run's records but no "
                        "checkpoint.pt deletes them first (without it, such a start is refused)")
    p.add_argument("--shards", type=int, default=d.shards,
                   help="taml: draw each meta-batch as this many equal shards, each from its "
                        "own random streams; torchrun's processes split them (0 = one per "
                        "process). One process with --shards K repeats a K-process run")
    return p


def _check(cfg: Config) -> None:
    """Raises ValueError naming the flag to change for an invalid combination."""
    # the rules the API's constructors apply to the same quantities (taml/run/validate.py)
    check_way("--way", cfg.way)
    check_n_steps("--n_steps", cfg.n_steps)
    positive = ["max_shot", "query", "metabatch", "n_train_iters", "n_test_episodes",
                "save_freq", "val_freq", "n_val_episodes", "print_freq", "log_freq"]
    for name in positive:
        check_count(f"--{name}", getattr(cfg, name))
    if cfg.tensorboard:
        from taml.run.tensorboard import INSTALL_HINT, tensorboard_available

        if not tensorboard_available():
            raise ValueError(INSTALL_HINT)
    check_seed("--seed", cfg.seed)
    if cfg.shards < 0:
        raise ValueError(f"--shards must be 0 (one per process) or more, got {cfg.shards}")
    if cfg.shards and cfg.metabatch % cfg.shards:
        raise ValueError(f"--metabatch {cfg.metabatch} does not split into --shards "
                         f"{cfg.shards} equal parts; choose a multiple of {cfg.shards}")
    if cfg.n_mc_samples < 0:
        raise ValueError(f"--n_mc_samples must be 0 (posterior means) or more, got "
                         f"{cfg.n_mc_samples}")
    if cfg.n_val_mc_samples < 0:
        raise ValueError(f"--n_val_mc_samples must be 0 (posterior means) or more, got "
                         f"{cfg.n_val_mc_samples}")
    if cfg.backbone not in BACKBONES:  # argparse checks it; a replace() may not
        raise ValueError(f"--backbone must be one of {', '.join(BACKBONES)}, got "
                         f"{cfg.backbone!r}")
    if cfg.head not in CLI_HEADS:  # argparse checks it; a replace() may not
        raise ValueError(f"--head must be one of {', '.join(CLI_HEADS)}, got {cfg.head!r}")
    if cfg.kl_normaliser not in KL_NORMALISERS:  # argparse checks it; a replace() may not
        raise ValueError(f"--kl_normaliser must be one of {', '.join(KL_NORMALISERS)}, got "
                         f"{cfg.kl_normaliser!r}")
    check_sigma_init("--sigma_init", cfg.sigma_init)
    check_precision("--precision", cfg.precision)
    for name in ("inner_lr", "meta_lr"):  # nan passes "<= 0": the shared rule tests it
        check_number(f"--{name}", getattr(cfg, name))
    if cfg.sigma_init != DEFAULT_SIGMA_INIT and not (cfg.omega_on or cfg.gamma_on or cfg.z_on):
        # it would be recorded in config.json, then refused by a resume as a change of what
        # is learned: a flag of another method, as the biased parser refuses them
        raise ValueError("--sigma_init sets the balancing variables' posteriors, which "
                         f"{cfg.method} has none of; switch on --omega_on, --gamma_on or "
                         "--z_on (Bayesian TAML), or leave the flag out")
    if cfg.n_mc_samples > 0 and not (cfg.omega_on or cfg.gamma_on or cfg.z_on):
        raise ValueError("--n_mc_samples samples the balancing variables; switch on at least "
                         "one of --omega_on --gamma_on --z_on, or use --n_mc_samples 0")
    if cfg.n_val_mc_samples > 0 and not (cfg.omega_on or cfg.gamma_on or cfg.z_on):
        raise ValueError("--n_val_mc_samples samples the balancing variables; switch on at "
                         "least one of --omega_on --gamma_on --z_on, or use "
                         "--n_val_mc_samples 0")
    if cfg.image_size is not None and cfg.image_size not in (32, 84):
        raise ValueError(f"--image_size must be 32 or 84 (the conv net's input sizes), got "
                         f"{cfg.image_size}")
    from taml.data.registry import is_folder_dataset

    if cfg.image_size is not None and not any(
            is_folder_dataset(n) for n in cfg.id_dataset + cfg.ood_dataset):
        # built-in datasets have their stores' size: the flag would be recorded, not used
        raise ValueError(f"--image_size applies to folder:PATH datasets only; "
                         f"{cfg.id_dataset[0]} has its own size: leave the flag out")
    if len(set(cfg.id_dataset)) != len(cfg.id_dataset):
        raise ValueError(f"--id_dataset lists a dataset twice: {','.join(cfg.id_dataset)}")
    from taml.data.registry import DatasetError, get_spec

    try:
        id_specs = [get_spec(n, cfg.image_size) for n in cfg.id_dataset]
        ood_specs = [get_spec(n, cfg.image_size) for n in cfg.ood_dataset]
    except DatasetError as error:
        raise ValueError(str(error)) from error
    for spec in id_specs + ood_specs:
        if spec.role != "few_shot":  # their classes are shared by train and test
            raise ValueError(f"'{spec.name}' is a classification dataset for the biased-data "
                             "learners (--mode train --dataset ...), not a few-shot dataset "
                             "for meta-learning")
    for spec in id_specs:
        if "train" not in spec.splits:
            raise ValueError(f"'{spec.name}' has no meta-training split (it is an OOD "
                             "dataset); use it as --ood_dataset, not --id_dataset")
    sizes = {s.name: s.image_size for s in id_specs + ood_specs}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"datasets of different image sizes cannot be mixed: {sizes}. "
                         "Pair 32-pixel datasets with 32-pixel ones (cifar/svhn, the "
                         "multi-dataset group, synthetic) and 84 with 84 (mimgnet/cub)")


def parse_config(argv: list[str] | None = None) -> Config:
    parser = build_parser()
    args = parser.parse_args(argv)
    cfg = Config(**{f.name: getattr(args, f.name) for f in fields(Config)})
    try:
        if cfg.savedir is not None:  # '~' expanded ('--savedir=~/x' escapes the shell's)
            cfg = replace(cfg, savedir=str(expand_savedir(cfg.savedir, "--savedir")))
        if cfg.data_root is not None:
            cfg = replace(cfg, data_root=str(expand_savedir(cfg.data_root, "--data_root")))
        _check(cfg)
    except (ValueError, RunDirError) as error:
        parser.error(str(error))
    return cfg


def image_size_of(cfg: Config) -> int:
    from taml.data.registry import get_spec

    return get_spec(cfg.id_dataset[0], cfg.image_size).image_size
