"""GPU preprocessing: one fused CUDA kernel that does what torchvision's eval transform does to a PIL image.

uint8 HWC source (RGB, BGR, RGBA, BGRA or greyscale; any size; pitched rows) → PIL's antialiased resize →
centre crop → normalisation (optionally with GoogLeNet's or Inception v3's transform_input folded in) → NCHW float32 or
float16, written straight into a device buffer, a whole batch per launch. It equals PIL bit for bit in
uint8 (then one float32 multiply-add per value).

- `preprocess.cu`  the kernel (self-contained: NVRTC compiles it on a device without a toolkit)
- `reference.py`   the coefficient tables it reads and its arithmetic in NumPy (tested against PIL)
- `build.py`       nvcc ahead of time (cubins per SM), NVRTC at load time
- `launch.py`      cuda-python driver loader/launcher: `CudaPreprocessor`

Nothing here imports cuda-python at import time: CPU-only installs can import the package.
"""
