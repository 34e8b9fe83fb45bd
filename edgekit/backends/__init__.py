"""Inference runtimes: base.py (what a backend is: its run half, its convert half, its options), registry.py
(the run halves: what a device imports), converters.py (the convert halves: the workstation's), shared Q/DQ
files (qdq.py, qdq_rules.py, placements.py), and one folder per backend."""
