"""Dataset store, registry, generators and the episode sampler."""
