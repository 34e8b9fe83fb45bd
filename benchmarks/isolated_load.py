"""Issue 31: what parsing a bundle's model file in a child process first (runtime/isolate.py) costs at load.

`edgekit.load` on the same bundle with EDGEKIT_ISOLATE_PARSING on (the default) and off, timed in turns with the
one timing loop (measure.latency.time_in_turns), for bundles of three runtimes and two model sizes:

- GoogLeNet trained briefly here (Fashion-MNIST, 64×64): ONNX Runtime FP32, OpenVINO INT8, LiteRT FP32 (arm-cpu);
- ResNet-50 (random weights, 224×224, ~100 MB of weights): ONNX Runtime FP32.

    .venv/bin/python benchmarks/isolated_load.py [--out benchmarks/results] [--iterations 10]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torchvision

from edgekit.core.progress import Progress
from edgekit.core.threads import resolve_threads
from edgekit.data.fashion_mnist import write_image_folder
from edgekit.measure.environment import environment
from edgekit.measure.latency import TimingProtocol, time_in_turns
from edgekit.model.finetune import FinetuneConfig, run_finetune
from edgekit.pipeline.compile import compile_bundle
from edgekit.pipeline.compile_config import CompileConfig
from edgekit.runtime.isolate import ISOLATE_ENV
from edgekit.targets import get_target


def _load(bundle: Path, isolated: bool) -> Any:
    import edgekit

    os.environ[ISOLATE_ENV] = "1" if isolated else "0"
    return edgekit.load(bundle)


def _bundles(work: Path, progress: Progress) -> dict[str, Path]:
    train = write_image_folder(work / "train", "train", 40, seed=0)
    calib = write_image_folder(work / "calib", "train", 10, seed=0, skip=40)
    googlenet = work / "googlenet.pt"
    run_finetune(FinetuneConfig(data=str(train), out=googlenet, weights="none", epochs=1, resize=72, crop=64), progress)
    resnet = work / "resnet50.pt"
    torch.save({"model_state_dict": torchvision.models.resnet50(num_classes=10).state_dict(), "arch": "resnet50",
                "classes": [f"c{i}" for i in range(10)]}, resnet)  # fmt: skip
    plans = {
        "googlenet onnxruntime fp32": (googlenet, "x86-cpu", "fp32", "onnxruntime"),
        "googlenet openvino int8": (googlenet, "x86-cpu", "int8", "openvino"),
        "googlenet litert fp32": (googlenet, "arm-cpu", "fp32", "litert"),
        "resnet50 onnxruntime fp32": (resnet, "x86-cpu", "fp32", "onnxruntime"),
    }
    built = {}
    for name, (model, target, precision, backend) in plans.items():
        out = work / name.replace(" ", "-")
        config = CompileConfig(model=model, target=get_target(target), out=out, precision=precision, backend=backend,
                               calib=calib if precision == "int8" else None, min_agreement=0.0)  # fmt: skip
        compile_bundle(config, progress)
        built[name] = out
    return built


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--render", action="store_true", help="only rewrite the .md from the .json")
    args = parser.parse_args()
    if args.render:
        (args.out / "isolated_load.md").write_text(render(json.loads((args.out / "isolated_load.json").read_text())))
        return
    progress = Progress()
    started = time.perf_counter()
    rows = []
    protocol = TimingProtocol(warmup=1, iterations=args.iterations, block=1, settle=0)
    with tempfile.TemporaryDirectory() as tmp:
        for name, bundle in _bundles(Path(tmp), progress).items():
            calls = [lambda b=bundle: _load(b, True), lambda b=bundle: _load(b, False)]
            isolated, in_process = time_in_turns(calls, protocol, [1, 1], None, progress, name)
            size = sum(p.stat().st_size for p in bundle.rglob("*") if p.is_file())
            rows.append({"bundle": name, "bytes": size, "isolated_p50_ms": isolated.p50_ms,
                         "in_process_p50_ms": in_process.p50_ms, "iterations": isolated.n})  # fmt: skip
    results = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "environment": environment(resolve_threads(0)),
        "minutes": round((time.perf_counter() - started) / 60, 1),
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "isolated_load.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "isolated_load.md").write_text(render(results))
    print(render(results))


def render(results: dict[str, Any]) -> str:
    env = results["environment"]
    lines = [
        "# What parsing in a child process first costs at load (edgekit.load, issue 31)",
        "",
        f"{results['date']}, {env['cpu']} ({', '.join(env.get('cpu_features') or []) or 'features not recorded'}), "
        f"{env['threads']} threads, Python {env['python']}; {results['minutes']} min. `edgekit.load` of the same "
        "bundle with EDGEKIT_ISOLATE_PARSING on (default: the model is loaded once in a child, then here) and off, "
        "timed in turns; p50 of the iterations shown.",
        "",
        "| bundle | size | load, isolated (p50) | load, in process (p50) | cost of isolation | iterations |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in results["rows"]:
        cost = row["isolated_p50_ms"] - row["in_process_p50_ms"]
        lines.append(
            f"| {row['bundle']} | {row['bytes'] / 2**20:.1f} MiB | {row['isolated_p50_ms']:.0f} ms | "
            f"{row['in_process_p50_ms']:.0f} ms | +{cost:.0f} ms | {row['iterations']} |"
        )
    lines += ["", f"Reproduce: `.venv/bin/python {env.get('command', 'benchmarks/isolated_load.py')}`."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
