"""Learning from biased data: the command line, the online trainer and its run folders."""
