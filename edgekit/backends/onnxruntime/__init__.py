"""ONNX Runtime on the CPU: the reference runtime, available on every platform (run.py, convert.py)."""
