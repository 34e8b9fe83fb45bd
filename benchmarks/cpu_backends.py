"""CPU latency of GoogLeNet at 224×224: PyTorch eager / channels_last / ONNX Runtime / OpenVINO /
the edgekit bundle, batch 1 and 8, all in one run on one machine.

The model is a GoogLeNet trained on Fashion-MNIST by edgekit (`make demo` makes one; otherwise this
script trains a small one). Weights do not change the work done, but they are real.

    .venv/bin/python benchmarks/cpu_backends.py [--checkpoint PATH] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.backends import OnnxRuntimeBackend, OpenVinoBackend
from edgekit.bench.environment import environment
from edgekit.bench.latency import measure
from edgekit.compile import compile_bundle
from edgekit.config import CompileConfig
from edgekit.data.datasets import FASHION_MNIST
from edgekit.model.checkpoint import load_checkpoint
from edgekit.model.finetune import FinetuneConfig, run_finetune
from edgekit.progress import Progress
from edgekit.reference import TorchReference
from edgekit.runtime import BundleModel, resolve_threads
from edgekit.targets import get_target


def _checkpoint(path: Path | None, work: Path, progress: Progress) -> Path:
    if path is not None:
        return path
    demo = Path("demo-out/googlenet-fashion.pt")
    if demo.is_file():
        return demo
    progress.note("no checkpoint given and no demo checkpoint: training a small one on Fashion-MNIST")
    out = work / "googlenet.pt"
    config = FinetuneConfig(data=FASHION_MNIST, out=out, per_class=100, epochs=2, lr=0.05, resize=110, crop=96)
    run_finetune(config, progress)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--threads", type=int, default=0, help="0 = all cores")
    args = parser.parse_args()

    progress = Progress()
    threads = resolve_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        checkpoint = _checkpoint(args.checkpoint, work, progress)
        bundle_dir = work / "bundle"
        # 224×224 whatever the checkpoint was trained at: the standard GoogLeNet input.
        compile_bundle(
            CompileConfig(
                model=checkpoint, target=get_target("x86-cpu"), out=bundle_dir, resize=256, crop=224, threads=threads
            ),
            progress,
        )
        module = load_checkpoint(checkpoint).module
        onnx_file = bundle_dir / "model.onnx"
        bundle = BundleModel.open(bundle_dir, threads=threads)
        candidates: dict[str, Any] = {
            "PyTorch eager FP32": TorchReference(module, threads).run,
            "PyTorch channels_last FP32": TorchReference(load_checkpoint(checkpoint).module, threads, True).run,
            "ONNX Runtime FP32": OnnxRuntimeBackend(onnx_file, threads).run,
            "OpenVINO FP32": OpenVinoBackend(onnx_file, threads).run,
            f"edgekit bundle ({bundle.backend}, incl. softmax)": bundle.probabilities,
        }
        rows = []
        rng = np.random.default_rng(0)
        for size in (1, 8):
            batch = rng.standard_normal((size, 3, 224, 224)).astype(np.float32)
            iterations = args.iterations if size == 1 else max(10, args.iterations // 4)
            for name, run in candidates.items():
                stats = measure(run, batch, args.warmup, iterations, progress, f"{name} b{size}")
                rows.append({"runtime": name, **stats})
                progress.note(f"{name:<45} batch {size}: p50 {stats['p50_ms']:.2f} ms")

    results = {"checkpoint": str(checkpoint), "input": [3, 224, 224], "rows": rows, "environment": environment(threads)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cpu_backends.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "cpu_backends.md").write_text(_markdown(results))
    print((args.out / "cpu_backends.md").read_text())


def _markdown(results: dict[str, Any]) -> str:
    env = results["environment"]
    lines = [
        "# GoogLeNet FP32 on the CPU, 224×224",
        "",
        f"{env['date']}, {env['cpu']}, {env['threads']} threads, {env['os']}; "
        + ", ".join(f"{k} {v}" for k, v in env["libraries"].items()),
        "",
        "| runtime | batch | p50 ms | p90 ms | p99 ms | images/s | vs PyTorch eager (p50) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    eager = {r["batch"]: r["p50_ms"] for r in results["rows"] if r["runtime"] == "PyTorch eager FP32"}
    for r in results["rows"]:
        lines.append(
            f"| {r['runtime']} | {r['batch']} | {r['p50_ms']:.2f} | {r['p90_ms']:.2f} | {r['p99_ms']:.2f} | "
            f"{r['images_per_s']:.1f} | {eager[r['batch']] / r['p50_ms']:.2f}× |"
        )
    lines += ["", f"Reproduce: `.venv/bin/python benchmarks/cpu_backends.py` (checkpoint: {results['checkpoint']})."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
