"""Episodic meta-learning on imbalanced and out-of-distribution tasks: MAML, Meta-SGD and
Bayesian TAML (:mod:`taml.episodic.learners`), their public API on any backbone
(:mod:`taml.episodic.api`, re-exported from ``taml``), their frozen config, the
meta-training loop (:mod:`taml.episodic.train`), meta-testing (:mod:`taml.episodic.evaluate`)
and resume."""
