"""The episodic learners, and the one table of their names.

``maml.py``, ``meta_sgd.py`` and ``bayesian_taml.py`` each hold one learner: its equations
(the docstring), ``NAME`` (run folders, report rows), ``TITLE`` (tables) and ``SWITCHES``
(the switches it turns on). The other modules are the one network and inner loop that every
switch combination configures (``meta_learner.MetaLearner``).

Here: :data:`LEARNERS` and :data:`ABLATIONS` (name -> (title, switches)), and the name and
title of any switch combination (:func:`method_name`, :func:`method_title`), which the
config (default run folders), the report and the studies read. No torch is imported, so the
config and the report name a method without loading the network.
"""

from __future__ import annotations

from collections.abc import Iterable

from taml.episodic.learners import bayesian_taml, maml, meta_sgd

# every switch (Config's and meta_learner.Switches' fields), in the order names spell them
SWITCH_NAMES = ("alpha_on", "omega_on", "gamma_on", "z_on")
# the balancing variables' symbols in titles
SYMBOLS = {"omega_on": "ω", "gamma_on": "γ", "z_on": "z"}

# name -> (title, switches): the paper's Table 1 rows, in its order
LEARNERS: dict[str, tuple[str, tuple[str, ...]]] = {
    m.NAME: (m.TITLE, m.SWITCHES) for m in (maml, meta_sgd, bayesian_taml)}


def method_name(on: Iterable[str]) -> str:
    """The short name of the learner the switches ``on`` make (for paths and tables): a
    learner's ``NAME`` when they are its switches, else Bayesian TAML's name and the switches
    that are on (``taml_alpha_omega``: Meta-SGD + ω)."""
    on = set(on)
    unknown = on - set(SWITCH_NAMES)
    if unknown:
        raise ValueError(f"unknown switch(es) {sorted(unknown)}; the switches are "
                         f"{', '.join(SWITCH_NAMES)}")
    for name, (_, switches) in LEARNERS.items():
        if on == set(switches):
            return name
    return "_".join([bayesian_taml.NAME] + [s.removesuffix("_on") for s in SWITCH_NAMES
                                            if s in on])


def switches_on(values) -> tuple[str, ...]:
    """The switches on in ``values``: a mapping (a saved config) or an object with the
    switch attributes (a Config)."""
    get = values.get if hasattr(values, "get") else lambda s: getattr(values, s, False)
    return tuple(s for s in SWITCH_NAMES if get(s))


# the paper's ablation rows: Meta-SGD plus one balancing variable, name -> (title, switches)
ABLATIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    method_name((*meta_sgd.SWITCHES, s)): (f"{meta_sgd.TITLE} + {symbol}",
                                          (*meta_sgd.SWITCHES, s))
    for s, symbol in SYMBOLS.items()}


def method_title(name: str) -> str:
    """The title of a method named by :func:`method_name` (``switches omega, gamma`` for a
    combination that is neither a learner nor an ablation)."""
    for table in (LEARNERS, ABLATIONS):
        if name in table:
            return table[name][0]
    return "switches " + ", ".join(name.removeprefix(f"{bayesian_taml.NAME}_").split("_"))
