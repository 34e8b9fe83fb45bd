#!/usr/bin/env bash
# Everything that needs a GPU, as one short run for a lent GPU machine (shared/GPU.md):
#   run (device tool): bash benchmarks/gpu/device_check.sh      → results under $OUT
# Installs edgekit into the machine's Python without fetching anything, runs the GPU training tests first
# (an epoch on the GPU with everything there and the loss falling, AMP, torchrun over NCCL), then the other
# GPU tests and the preprocessing benchmark (1920×1080 → 224², kernel vs torchvision on the CPU, ≥ 50×).
set -uo pipefail
out="${OUT:-benchmarks/results}"
mkdir -p "$out"
python3 -m pip install -q --no-deps --no-build-isolation -e . 2>&1 | tail -n 3
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.limit --format=csv | tee "$out/gpu-device.txt"
python3 -m pytest tests/gpu/test_train_gpu.py -q -rs 2>&1 | tee "$out/gpu-train-tests.log"
python3 -m pytest tests/gpu -q -rs --ignore=tests/gpu/test_train_gpu.py 2>&1 | tee "$out/gpu-tests.log"
python3 benchmarks/gpu/preprocess_bench.py --out "$out" 2>&1 | tee "$out/preprocess-bench.log"
