"""Learning from biased data: the online bilevel learners (:mod:`taml.biased.methods`), their
networks, the command line, the training loops and their run folders."""
