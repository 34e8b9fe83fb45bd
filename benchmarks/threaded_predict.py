"""Throughput of `BundleModel.probabilities` called from 1, 2, 4 and 8 threads at once, per backend, and
what the thread-safety design costs: each backend's pool (OpenVINO infer requests, LiteRT interpreters)
against the simplest safe alternative, one lock around the model. One run, one machine.

ONNX Runtime shares one session (its `run` is thread-safe); OpenVINO takes an infer request per call from
a pool; LiteRT an interpreter per call from a pool; TensorRT (not measurable here) takes turns on one
execution context. Every call is also checked against the sequential result: a wrong answer fails the run.

    .venv/bin/python benchmarks/threaded_predict.py [--checkpoint PATH] [--calls 64]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.core.progress import Progress
from edgekit.data.datasets import FASHION_MNIST
from edgekit.data.fashion_mnist import write_image_folder
from edgekit.data.images import read_image
from edgekit.data.preprocess import preprocess
from edgekit.measure.environment import environment
from edgekit.measure.latency import TimingProtocol, time_in_turns
from edgekit.model.finetune import FinetuneConfig, run_finetune
from edgekit.pipeline.compile import compile_bundle
from edgekit.pipeline.compile_config import CompileConfig
from edgekit.runtime.model import BundleModel
from edgekit.targets import get_target

THREADS = (1, 2, 4, 8)


def _throughput(call: Any, inputs: list[np.ndarray], expected: list[np.ndarray], threads: int, calls: int) -> float:
    """Images per second over `calls` batch-1 calls spread over `threads` threads (after a warm-up)."""
    for x in inputs[:4]:
        call(x)

    def one(index: int) -> bool:
        return bool(np.array_equal(call(inputs[index % len(inputs)]), expected[index % len(inputs)]))

    with ThreadPoolExecutor(threads) as pool:

        def all_calls() -> None:
            same = list(pool.map(one, range(calls)))
            if not all(same):
                raise SystemExit(f"{same.count(False)} of {calls} calls from {threads} threads gave a wrong answer")

        # The one timing loop, each call `calls` predictions over the pool: images/s of the median pass of three.
        return time_in_turns([all_calls], TimingProtocol(warmup=0, iterations=3), [calls])[0].images_per_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=Path("demo-out/googlenet-fashion.pt"))
    parser.add_argument("--calls", type=int, default=64)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    progress = Progress()
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        checkpoint = args.checkpoint
        if not checkpoint.is_file():
            checkpoint = work / "googlenet.pt"
            config = FinetuneConfig(
                data=FASHION_MNIST, out=checkpoint, per_class=30, val_per_class=10, epochs=1, resize=256, crop=224
            )
            run_finetune(config, progress)
        images = write_image_folder(work / "images", "test", 2, classes=tuple(range(10)), seed=3)
        variants = {
            "onnxruntime fp32": ("x86-cpu", "fp32", "onnxruntime", None),
            "onnxruntime int8": ("x86-cpu", "int8", "onnxruntime", None),
            "openvino fp32": ("x86-cpu", "fp32", "onnxruntime", "openvino"),
            "openvino int8": ("x86-cpu", "int8", "openvino", None),
            "litert fp32": ("arm-cpu", "fp32", "litert", None),
            "litert int8": ("arm-cpu", "int8", "litert", None),
        }
        rows: list[dict[str, Any]] = []
        for name, (target, precision, backend, run_with) in variants.items():
            out = work / name.replace(" ", "-")
            progress.note(f"compiling {name}")
            calib = images if precision == "int8" else None
            compile_bundle(
                CompileConfig(
                    model=checkpoint,
                    target=get_target(target),
                    out=out,
                    precision=precision,
                    backend=backend,
                    calib=calib,
                    calib_size=20,
                ),
                progress,
            )
            model = BundleModel.open(out, backend=run_with)
            files = sorted(p for p in images.rglob("*.png"))
            inputs = [preprocess(read_image(path), model.preprocessing)[None] for path in files]
            expected = [model.probabilities(x) for x in inputs]
            lock = threading.Lock()

            def locked(x: np.ndarray, model: BundleModel = model, lock: threading.Lock = lock) -> np.ndarray:
                with lock:
                    return model.probabilities(x)

            row: dict[str, Any] = {"model": name, "images_per_s": {}, "one_lock_images_per_s": {}}
            for threads in THREADS:
                row["images_per_s"][threads] = _throughput(model.probabilities, inputs, expected, threads, args.calls)
                row["one_lock_images_per_s"][threads] = _throughput(locked, inputs, expected, threads, args.calls)
                progress.note(
                    f"  {name}, {threads} thread(s): {row['images_per_s'][threads]:.1f} images/s "
                    f"(one lock: {row['one_lock_images_per_s'][threads]:.1f})"
                )
            rows.append(row)
    results = {"benchmark": "threaded_predict", "calls": args.calls, "rows": rows, "environment": environment(0)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "threaded_predict.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        "# Throughput of predict from several threads (batch 1, 224×224 GoogLeNet)",
        "",
        f"`benchmarks/threaded_predict.py`, one run, {args.calls} calls per cell, every answer checked against",
        "the sequential one. Images/s with edgekit's design; in brackets, the same with one lock around the model.",
        "",
        "| model | " + " | ".join(f"{t} thread(s)" for t in THREADS) + " |",
        "|---|" + "---|" * len(THREADS),
    ]
    for row in rows:
        cells = [f"{row['images_per_s'][t]:.1f} ({row['one_lock_images_per_s'][t]:.1f})" for t in THREADS]
        lines.append(f"| {row['model']} | " + " | ".join(cells) + " |")
    env = results["environment"]
    lines += [
        "",
        f"Machine: {env['cpu']}, {env['logical_cores']} logical cores, Python {env['python']}, {env['date']}.",
    ]
    (args.out / "threaded_predict.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
