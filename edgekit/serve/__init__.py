"""Deploying a bundle into what integrators run: Triton Inference Server (a model repository, and a real
server on this machine) and DeepStream's nvinfer (a config whose preprocessing is measured against edgekit's)."""
