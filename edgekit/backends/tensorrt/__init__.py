"""TensorRT on NVIDIA GPUs (Jetson and desktop).

run.py: engines and the preprocessing kernels at run time; convert.py: the ONNX file TensorRT builds
from; bundle_engines.py: building engines on the device; cuda.py: the one CUDA wrapper; kernels/: preprocessing.
"""
