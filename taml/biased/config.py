"""The configuration of a biased-data run (``main.py --mode train|test``): one frozen
dataclass, built once from its own argparse parser.

Defaults are MW-Net's long-tailed schedule scaled to the embedded ``glyphs`` data; the
runfiles (``runfiles/biased-*.sh``) set each paper's values. Invalid values stop at parse
time with one line naming the flag to change.
"""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import asdict, dataclass, fields, replace

from taml.run.cli import OneLineParser, check_path_flag
from taml.run.validate import check_count, check_number, check_seed

METHODS = ("erm", "class_balanced", "focal", "tml", "l2rw", "mwnet", "lnl")
DATASETS = ("glyphs", "digits", "mnist", "cifar10", "cifar100")
BIASES = ("long_tail", "binary", "noise", "none")
NOISE_TYPES = ("uniform", "flip", "flip2")
NETWORKS = ("lenet_tml", "lenet_l2rw", "resnet32", "wrn28_10")
# the network each dataset's papers use (glyphs: the small LeNet keeps the demo fast;
# digits: MNIST's LeNet, the images being upsampled to MNIST's 28x28)
DEFAULT_NETWORK = {"glyphs": "lenet_tml", "digits": "lenet_tml", "mnist": "lenet_tml",
                   "cifar10": "resnet32", "cifar100": "resnet32"}
AUGMENTATIONS = ("auto", "none", "crop_flip")
# the meta settings a method gets when the flag is left out: each official code's own (TML:
# outer step 0.1 applied every 10 steps, its hard-coded out_lr and update hook; MW-Net: Adam
# 1e-3, the stable noisy-label script's). Written into config.json resolved.
METHOD_DEFAULTS = {"tml": {"meta_lr": 0.1, "meta_every": 10},
                   "mwnet": {"meta_lr": 1e-3, "meta_every": 1}}
FALLBACK_DEFAULTS = {"meta_lr": 1e-3, "meta_every": 1}


@dataclass(frozen=True)
class BiasedConfig:
    mode: str = "train"
    method: str = "erm"
    # data and its bias (taml.data.recipes.BiasSpec)
    dataset: str = "glyphs"
    bias: str = "long_tail"
    imbalance_factor: float = 100.0
    ratio: float = 0.995
    binary_classes: tuple[int, int] = (2, 3)
    n_train: int = 5000
    binary_protocol: str = "tml"
    noise_type: str = "uniform"
    noise_rate: float = 0.4
    meta_per_class: int = 10
    image_size: int | None = None
    augment: str = "auto"
    # network and the real step
    network: str | None = None
    batch_size: int = 100
    meta_batch_size: int = 100
    epochs: int = 100
    steps: int | None = None
    lr: float = 0.1
    lr_schedule: tuple[int, ...] = (80, 90)
    lr_factor: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    # the method's hyper-parameters (taml.biased.methods.protocol.MethodHyper)
    meta_lr: float | None = None  # None: the method's own (METHOD_DEFAULTS)
    meta_every: int | None = None
    lookahead_lr: float | None = None
    focal_gamma: float = 1.0
    mwnet_hidden: int = 100
    meta_optimizer: str = "adam"
    tml_scale: str = "simplex"
    mwnet_weights: str = "mean"
    # Learning Not to Learn (taml/biased/train_lnl.py)
    color_var: float = 0.02
    lnl_lambda: float = 0.01
    grl_factor: float = 0.1
    pretrain_epochs: int = 0
    gray: bool = False
    # run
    eval_every: int = 500
    log_every: int = 50
    save_every: int = 500
    seed: int = 0
    device: str = "auto"
    gpu_id: int = 0
    savedir: str | None = None
    data_root: str | None = None
    progress: bool = True
    # added after the first runs: last, so that an old config.json's keys keep their order
    val_per_class: int = 0
    chance_check: bool = True
    # how to start, not what the run is: never in config.json or checkpoints
    force: bool = False

    def __post_init__(self):
        # a flag left out (None) takes the method's own default; frozen, so set it once here
        for name, value in METHOD_DEFAULTS.get(self.method, FALLBACK_DEFAULTS).items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)

    @property
    def resolved_network(self) -> str:
        if self.network:
            return self.network
        return DEFAULT_NETWORK.get(self.dataset, "resnet32")  # folder:PATH -> resnet32

    @property
    def resolved_savedir(self) -> str:
        if self.savedir:
            return self.savedir
        name = self.dataset.replace("folder:", "folder-").replace("/", "_")
        return f"./results/biased/{name}-{self.bias}/{self.method}"

    @property
    def resolved_augment(self) -> str:
        """auto: MW-Net's pad-and-crop + flip on CIFAR (the papers' MNIST runs use none)."""
        if self.augment != "auto":
            return self.augment
        return "crop_flip" if self.dataset in ("cifar10", "cifar100") else "none"

    def bias_spec(self):
        """The data recipe (:class:`taml.data.recipes.BiasSpec`) these flags describe."""
        from taml.data.recipes import BiasSpec  # data is below the family: no cycle

        return BiasSpec(dataset=self.dataset, bias=self.bias,
                        imbalance_factor=self.imbalance_factor, ratio=self.ratio,
                        binary_classes=tuple(self.binary_classes), n_train=self.n_train,
                        noise_type=self.noise_type, noise_rate=self.noise_rate,
                        meta_per_class=self.meta_per_class, seed=self.seed,
                        image_size=self.image_size, binary_protocol=self.binary_protocol,
                        val_per_class=self.val_per_class)

    def to_dict(self) -> dict:
        values = asdict(self)
        del values["force"]  # how this command starts, not what the run is
        return {**values, "family": "biased"}


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}") from None


def _pair(text: str) -> tuple[int, int]:
    values = _int_list(text)
    if len(values) != 2:
        raise argparse.ArgumentTypeError(f"expected two labels 'MINORITY,MAJORITY', got {text!r}")
    return values  # type: ignore[return-value]


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="main.py --mode train|test",
        description="Learning from biased data: ERM, class-balanced, focal, TML, L2RW, "
                    "MW-Net (and LNL) on long-tailed, binary-imbalanced or noisy data.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    d = BiasedConfig()
    p.add_argument("--mode", choices=["train", "test"], default=d.mode)
    p.add_argument("--method", choices=METHODS, default=d.method)
    g = p.add_argument_group("data")
    g.add_argument("--dataset", default=d.dataset,
                   help=f"one of {', '.join(DATASETS)}, or folder:PATH (class sub-folders)")
    g.add_argument("--bias", choices=BIASES, default=d.bias)
    g.add_argument("--imbalance_factor", type=float, default=d.imbalance_factor,
                   help="long_tail: largest class / smallest class")
    g.add_argument("--ratio", type=float, default=d.ratio,
                   help="binary: share of the majority class in training, in (0, 1)")
    g.add_argument("--binary_classes", type=_pair, default=d.binary_classes,
                   help="binary: 'MINORITY,MAJORITY' original labels")
    g.add_argument("--n_train", type=int, default=d.n_train, help="binary: training images")
    g.add_argument("--binary_protocol", choices=["tml", "l2rw"], default=d.binary_protocol,
                   help="binary: whose count formula and test size (TML 2-vs-3: 4975 threes, "
                        "24 twos; L2RW 4-vs-9: 4970 nines, 20 fours)")
    g.add_argument("--noise_type", choices=NOISE_TYPES, default=d.noise_type)
    g.add_argument("--noise_rate", type=float, default=d.noise_rate, help="noise: in [0, 1)")
    g.add_argument("--meta_per_class", type=int, default=d.meta_per_class,
                   help="balanced meta (target) images per class")
    g.add_argument("--val_per_class", type=int, default=d.val_per_class,
                   help="balanced, clean validation images per class held out of the train "
                        "split (test.json's 'validation'; settings are chosen on it, never on "
                        "the test set); 0 = none")
    g.add_argument("--image_size", type=int, default=d.image_size,
                   help="folder:PATH datasets: image size (default 32)")
    g.add_argument("--augment", choices=AUGMENTATIONS, default=d.augment,
                   help="training augmentation; auto = crop_flip on CIFAR, none otherwise")
    g.add_argument("--data_root", default=d.data_root,
                   help="folder of the dataset stores (default: $TAML_DATA_ROOT, else data/ "
                        "in a checkout, else ~/.cache/taml/data)")
    t = p.add_argument_group("training")
    t.add_argument("--network", choices=NETWORKS, default=d.network,
                   help="default: lenet_tml for glyphs, digits and mnist, resnet32 "
                        "otherwise")
    t.add_argument("--batch_size", type=int, default=d.batch_size)
    t.add_argument("--meta_batch_size", type=int, default=d.meta_batch_size,
                   help="meta (target) batch; the whole meta set when it is smaller")
    t.add_argument("--epochs", type=int, default=d.epochs)
    t.add_argument("--steps", type=int, default=d.steps,
                   help="train for this many steps instead of --epochs; --lr_schedule is "
                        "then in steps too")
    t.add_argument("--lr", type=float, default=d.lr)
    t.add_argument("--lr_schedule", type=_int_list, default=d.lr_schedule,
                   help="milestones (epochs, or steps with --steps) where lr is multiplied "
                        "by --lr_factor; '' for a constant lr")
    t.add_argument("--lr_factor", type=float, default=d.lr_factor)
    t.add_argument("--momentum", type=float, default=d.momentum)
    t.add_argument("--nesterov", action="store_true", help="Nesterov momentum (MW-Net)")
    t.add_argument("--weight_decay", type=float, default=d.weight_decay)
    m = p.add_argument_group("method")
    m.add_argument("--meta_lr", type=float, default=None,
                   help="TML: class-weight step (default 0.1, the original's); MW-Net: V's "
                        "optimiser lr (default 1e-3, Adam)")
    m.add_argument("--meta_every", type=int, default=None,
                   help="TML: apply the class-weight update every this many steps (default "
                        "10, the original's)")
    m.add_argument("--lookahead_lr", type=float, default=d.lookahead_lr,
                   help="lookahead step size (default: TML the base --lr, as its original; "
                        "MW-Net the current lr of the real step, as its original)")
    m.add_argument("--focal_gamma", type=float, default=d.focal_gamma)
    m.add_argument("--mwnet_weights", choices=["mean", "normalised"],
                   default=d.mwnet_weights,
                   help="MW-Net: 'mean' (1/B) Σ v_i l_i (the stable noisy-label script); "
                        "'normalised' Σ v_i l_i / Σ v_j (the class-imbalance script)")
    m.add_argument("--tml_scale", choices=["simplex", "classes"], default=d.tml_scale,
                   help="TML: 'simplex' keeps the paper's loss (1/C of a mean CE at uniform "
                        "weights); 'classes' multiplies it by C, so uniform weights are ERM")
    m.add_argument("--mwnet_hidden", type=int, default=d.mwnet_hidden)
    m.add_argument("--meta_optimizer", choices=["adam", "sgd"], default=d.meta_optimizer,
                   help="MW-Net's optimiser of V")
    n = p.add_argument_group("Learning Not to Learn (--method lnl)")
    n.add_argument("--color_var", type=float, default=d.color_var,
                   help="Colored-MNIST colour variance sigma^2")
    n.add_argument("--lnl_lambda", type=float, default=d.lnl_lambda, help="entropy weight")
    n.add_argument("--grl_factor", type=float, default=d.grl_factor,
                   help="gradient-reversal factor")
    n.add_argument("--pretrain_epochs", type=int, default=d.pretrain_epochs,
                   help="epochs of f, g alone before the bias head joins")
    n.add_argument("--gray", action="store_true", help="the paper's grayscale baseline")
    r = p.add_argument_group("run")
    r.add_argument("--eval_every", type=int, default=d.eval_every,
                   help="evaluate on the test set every this many steps (eval.json)")
    r.add_argument("--log_every", type=int, default=d.log_every,
                   help="training statistics to train.log and train_metrics.csv")
    r.add_argument("--save_every", type=int, default=d.save_every,
                   help="checkpoint every this many steps (and at the end)")
    r.add_argument("--seed", type=int, default=d.seed, help="seeds every generator")
    r.add_argument("--device", choices=["auto", "cpu", "cuda"], default=d.device)
    r.add_argument("--gpu_id", type=int, default=d.gpu_id)
    r.add_argument("--savedir", default=d.savedir,
                   help="run folder (default ./results/biased/<dataset>-<bias>/<method>)")
    r.add_argument("--no_progress", dest="progress", action="store_false",
                   help="no tqdm progress bars")
    r.add_argument("--no_chance_check", dest="chance_check", action="store_false",
                   help="train on when the training accuracy stays at chance for a whole "
                        "epoch (by default the run stops, exit 1: taml/run/chance.py)")
    r.add_argument("--force", action="store_true",
                   help="a new run in a --savedir that holds another run's records but no "
                        "checkpoint.pt deletes them first (without it, such a start is refused)")
    return p


def _check(cfg: BiasedConfig) -> None:
    """Raises ValueError naming the flag to change."""
    positive = ["batch_size", "meta_batch_size", "epochs", "n_train", "meta_per_class",
                "eval_every", "log_every", "save_every", "meta_every", "mwnet_hidden"]
    for name in positive:  # the API's rules for the same quantities (taml/run/validate.py)
        check_count(f"--{name}", getattr(cfg, name))
    check_count("--steps", cfg.steps)
    check_seed("--seed", cfg.seed)
    if not (cfg.dataset in DATASETS or cfg.dataset.startswith("folder:")):
        raise ValueError(f"--dataset {cfg.dataset!r} is not known; choose one of "
                         f"{', '.join(DATASETS)}, or folder:PATH")
    if cfg.dataset == "folder:":
        raise ValueError("--dataset folder: needs a path, e.g. folder:/data/my_images")
    if not 0 < cfg.ratio < 1:
        raise ValueError(f"--ratio must be in (0, 1) (the majority's share), got {cfg.ratio}")
    if not math.isfinite(cfg.imbalance_factor) or cfg.imbalance_factor < 1:
        raise ValueError(f"--imbalance_factor must be at least 1 (largest / smallest class), "
                         f"got {cfg.imbalance_factor}")
    if not 0 <= cfg.noise_rate < 1:
        raise ValueError(f"--noise_rate must be in [0, 1), got {cfg.noise_rate}")
    a, b = cfg.binary_classes
    if a == b or min(a, b) < 0:
        raise ValueError(f"--binary_classes needs two different labels, got {a},{b}")
    # every real-valued flag finite (nan passes "<= 0", and would load the data, make the
    # folder and die in a traceback at the first step) and in its range, named with its value
    for name in ("lr", "meta_lr", "lr_factor", "lookahead_lr", "color_var"):
        check_number(f"--{name}", getattr(cfg, name))
    for name in ("weight_decay", "focal_gamma", "lnl_lambda", "grl_factor"):
        # a negative --grl_factor turns the reversal around (f would help the colour head)
        check_number(f"--{name}", getattr(cfg, name), inclusive=True)
    check_number("--momentum", cfg.momentum, inclusive=True, below=1.0)
    if cfg.nesterov and cfg.momentum == 0:
        raise ValueError("--nesterov needs a --momentum above 0")
    if list(cfg.lr_schedule) != sorted(set(cfg.lr_schedule)) or any(
            m < 1 for m in cfg.lr_schedule):
        raise ValueError(f"--lr_schedule must be increasing positive milestones, got "
                         f"{','.join(map(str, cfg.lr_schedule))}")
    if cfg.image_size is not None and cfg.image_size < 8:
        raise ValueError(f"--image_size must be at least 8, got {cfg.image_size}")
    if cfg.pretrain_epochs < 0:
        raise ValueError(f"--pretrain_epochs must be 0 or more, got {cfg.pretrain_epochs}")
    if cfg.method != "lnl":  # the builders' own checks that need no data
        from taml.data.recipes import check_spec
        from taml.data.registry import DatasetError

        try:
            check_spec(cfg.bias_spec())
        except DatasetError as error:
            raise ValueError(str(error)) from None


# the flags only some methods read, and which: another method would ignore the flag but
# record it in config.json, as if the run had used it
METHOD_FLAGS = {
    "meta_lr": ("tml", "mwnet"), "meta_every": ("tml",),
    "lookahead_lr": ("tml", "l2rw", "mwnet"), "focal_gamma": ("focal",),
    "tml_scale": ("tml",), "mwnet_hidden": ("mwnet",), "meta_optimizer": ("mwnet",),
    "mwnet_weights": ("mwnet",),
    **{name: ("lnl",) for name in ("color_var", "lnl_lambda", "grl_factor",
                                   "pretrain_epochs", "gray")},
    # LNL makes its own coloured data and network: the recipe and network flags are not its
    **{name: tuple(m for m in METHODS if m != "lnl") for name in (
        "bias", "imbalance_factor", "ratio", "binary_classes", "n_train", "binary_protocol",
        "noise_type", "noise_rate", "meta_per_class", "val_per_class", "network", "augment",
        "meta_batch_size")},
}


def _check_method_flags(cfg: BiasedConfig) -> None:
    """A flag set away from its default that ``--method`` does not read is refused, naming
    the methods that do (a flag given at its default value changes nothing, so passes)."""
    default = BiasedConfig(method=cfg.method)
    for name, users in METHOD_FLAGS.items():
        if cfg.method not in users and getattr(cfg, name) != getattr(default, name):
            who = ("every --method but lnl (which colours its own data)" if "lnl" not in users
                   and len(users) == len(METHODS) - 1 else f"--method {' / '.join(users)} only")
            raise ValueError(f"--{name} is used by {who}; --method {cfg.method} would ignore "
                             "it: leave it out")


def parse_biased_config(argv: list[str] | None = None) -> BiasedConfig:
    parser = build_parser()
    args = parser.parse_args(argv)
    cfg = BiasedConfig(**{f.name: getattr(args, f.name) for f in fields(BiasedConfig)})
    try:
        for name in ("savedir", "data_root"):  # '' would be the current (or default) folder
            check_path_flag(f"--{name}", getattr(cfg, name))
            if getattr(cfg, name) is not None:  # '~' expanded ('--savedir=~/x' is not)
                cfg = replace(cfg, **{name: os.path.expanduser(getattr(cfg, name))})
        _check(cfg)
        _check_method_flags(cfg)
    except ValueError as error:
        parser.error(str(error))
    return cfg


def config_from_dict(values: dict) -> BiasedConfig:
    """A config saved by :meth:`BiasedConfig.to_dict` (lists back to tuples)."""
    names = {f.name for f in fields(BiasedConfig)}
    kept = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in names}
    return BiasedConfig(**kept)
