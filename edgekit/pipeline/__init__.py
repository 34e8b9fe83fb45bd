"""Orchestration: compile, precision auto, sweep, bench, prune, quantize and building engines on the device."""
