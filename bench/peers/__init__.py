"""The peers' sides: torch's own pruning utilities, Torch-Pruning, and NNI (in its own environment)."""
