"""Inference runtimes: base.py (what a backend is), registry.py (the one list), one folder per backend."""
