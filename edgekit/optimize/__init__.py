"""Optimisation stages: quantization (and, later, pruning). Each takes an artifact, returns a new one."""
