#!/usr/bin/env bash
# `edgekit sweep` over fp32/int8 × 4 pruning ratios of a Fashion-MNIST GoogLeNet, report copied into
# benchmarks/results/sweep/. The checkpoint is the base model benchmarks/prune_sweep.py trains
# (run it with --work DIR to keep it), or any GoogLeNet checkpoint of the 10 Fashion-MNIST classes.
#
#   bash benchmarks/sweep_fashion.sh CHECKPOINT [WORK_DIR]
set -euo pipefail
checkpoint=${1:?usage: sweep_fashion.sh CHECKPOINT [WORK_DIR]}
work=${2:-$(mktemp -d)}
bin=.venv/bin
$bin/python scripts/fashion_mnist_folder.py "$work/val" --split test --per-class 50 --seed 3
$bin/python scripts/fashion_mnist_folder.py "$work/calib" --split train --per-class 26 --seed 7
$bin/python scripts/fashion_mnist_folder.py "$work/recover" --split train --per-class 150 --seed 5
$bin/edgekit sweep "$checkpoint" --target x86-cpu --val "$work/val" --calib "$work/calib" \
    --precisions fp32,int8 --prune 0,0.3,0.5,0.7 --recover-data "$work/recover" --recover-epochs 2 \
    --iterations 50 --out "$work/sweep"
mkdir -p benchmarks/results/sweep
cp "$work/sweep/report/report.html" "$work/sweep/report/report.md" benchmarks/results/sweep/
echo "report: benchmarks/results/sweep/report.html"
