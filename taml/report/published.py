"""The numbers Lee et al. (ICLR 2020) report, and the settings they were measured in.

A published row is put beside ours only when our table's settings are the paper's (those of
``runfiles/experiment.sh``); the paper's ablation table is not transcribed here (the
numbers of the paper's main tables only), so ablation tables get none.
"""

from __future__ import annotations

from taml.episodic.learners import bayesian_taml, maml, meta_sgd

CITATION = "Lee et al. 2020"

# the settings of the original's runfiles; test with 10 inner steps
_COMMON = {"max_shot": 50, "query": 15, "n_steps": 10, "train_n_steps": 5,
           "sampler_mode": "both", "image_size": None}
SETTINGS = {
    "cifar": {**_COMMON, "id_dataset": ("cifar",), "ood_dataset": ("svhn",), "way": 5,
              "metabatch": 4, "n_train_iters": 50000, "meta_lr": 1e-3},
    "mimgnet": {**_COMMON, "id_dataset": ("mimgnet",), "ood_dataset": ("cub",), "way": 5,
                "metabatch": 1, "n_train_iters": 80000, "meta_lr": 1e-4},
    "multi": {**_COMMON, "id_dataset": ("aircraft", "quickdraw", "vgg_flower"),
              "ood_dataset": ("traffic", "fashion-mnist"), "way": 10, "metabatch": 3,
              "n_train_iters": 60000, "meta_lr": 1e-3},
}

# the rows' methods, by the learners' names (taml.episodic.learners)
MAML, META_SGD, TAML = maml.NAME, meta_sgd.NAME, bayesian_taml.NAME
# setting -> method -> column -> (accuracy %, 95% CI or None where the paper gives none)
RESULTS = {
    "cifar": {
        MAML: {"id/cifar": (71.55, 0.23), "ood/svhn": (45.17, 0.22)},
        META_SGD: {"id/cifar": (72.71, 0.21), "ood/svhn": (46.45, 0.24)},
        TAML: {"id/cifar": (75.15, 0.20), "ood/svhn": (51.87, 0.23)},
    },
    "mimgnet": {
        MAML: {"id/mimgnet": (66.64, 0.22), "ood/cub": (65.77, 0.24)},
        META_SGD: {"id/mimgnet": (69.95, 0.20), "ood/cub": (65.94, 0.22)},
        TAML: {"id/mimgnet": (71.46, 0.19), "ood/cub": (71.71, 0.21)},
    },
    "multi": {
        method: dict(zip(("id/aircraft", "id/quickdraw", "id/vgg_flower", "ood/traffic",
                          "ood/fashion-mnist"), ((v, None) for v in values), strict=True))
        for method, values in ((MAML, (48.60, 69.02, 60.38, 51.96, 63.10)),
                               (META_SGD, (49.71, 70.26, 59.41, 52.07, 62.71)),
                               (TAML, (54.43, 72.03, 67.72, 64.81, 68.94)))
    },
}


def published_setting(table_settings: dict) -> str | None:
    """The paper's setting ('cifar', 'mimgnet', 'multi') whose configuration these table
    settings are, or None."""
    for name, wanted in SETTINGS.items():
        if all(table_settings.get(k) == v for k, v in wanted.items()):
            return name
    return None
