"""CPU latency of GoogLeNet at 224×224, batch 1 and 8, all in one run on one machine:
PyTorch eager / channels_last FP32, ONNX Runtime FP32 and INT8 (its own Q/DQ placement), OpenVINO
FP32 and INT8 (NNCF), LiteRT FP32 and full-integer INT8 (the `arm-cpu` target's .tflite files, XNNPACK),
and edgekit's FP32 and INT8 `x86-cpu` bundles. Then INT8 accuracy: the `x86-cpu` and `arm-cpu` INT8
bundles against the FP32 PyTorch model on all 10,000 Fashion-MNIST test images.

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

from edgekit.backends.base import ConvertRequest, ModelFiles
from edgekit.backends.litert.convert import LiteRtConverter
from edgekit.backends.litert.run import LiteRtBackend
from edgekit.backends.onnxruntime.run import OnnxRuntimeBackend
from edgekit.backends.openvino.run import OpenVinoBackend
from edgekit.backends.qdq import quantize_int8
from edgekit.core.progress import Progress
from edgekit.core.threads import resolve_threads
from edgekit.data.calibration import calibration_inputs
from edgekit.data.datasets import FASHION_MNIST
from edgekit.data.fashion_mnist import write_image_folder
from edgekit.data.preprocess import PreprocessSpec
from edgekit.measure.environment import environment
from edgekit.measure.evaluate import load_eval_set, run_batched, score
from edgekit.measure.latency import TimingProtocol, time_runs
from edgekit.measure.reference import TorchReference
from edgekit.model.checkpoint import load_checkpoint
from edgekit.model.finetune import FinetuneConfig, run_finetune
from edgekit.pipeline.compile import compile_bundle
from edgekit.pipeline.compile_config import CompileConfig
from edgekit.runtime.model import BundleModel
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
    parser.add_argument("--no-accuracy", dest="accuracy", action="store_false", help="skip the 10,000-image check")
    args = parser.parse_args()

    progress = Progress()
    threads = resolve_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        checkpoint = _checkpoint(args.checkpoint, work, progress)
        calib = write_image_folder(work / "calib", "train", 26, seed=7)  # 260 images, none from the test split
        x86 = get_target("x86-cpu")
        bundles = {}
        for precision in ("fp32", "int8"):
            # 224×224 whatever the checkpoint was trained at: the standard GoogLeNet input.
            config = CompileConfig(
                model=checkpoint, target=x86, out=work / precision, precision=precision, resize=256, crop=224,
                threads=threads, calib=calib,
            )  # fmt: skip
            compile_bundle(config, progress)
            bundles[precision] = BundleModel.open(work / precision, threads=threads)
        module = load_checkpoint(checkpoint).module
        onnx_file = work / "fp32" / "model.onnx"
        ort_int8 = work / "ort_int8.onnx"
        calibration = calibration_inputs(calib, PreprocessSpec(), 256).inputs
        quantize_int8(onnx_file, ort_int8, calibration, "cpu")
        litert = {}
        for precision in ("fp32", "int8"):
            # The arm-cpu bundle's files, built from the same ONNX export and calibration images.
            (work / f"litert_{precision}").mkdir()
            request = ConvertRequest(precision, calibration if precision == "int8" else None)
            name, _ = LiteRtConverter.convert(onnx_file, work / f"litert_{precision}", request)
            litert[precision] = LiteRtBackend(
                ModelFiles.from_file(work / f"litert_{precision}" / name, LiteRtBackend), threads, precision
            )
        candidates: dict[str, Any] = {
            "PyTorch eager FP32": TorchReference(module, threads).run,
            "PyTorch channels_last FP32": TorchReference(load_checkpoint(checkpoint).module, threads, True).run,
            "ONNX Runtime FP32": OnnxRuntimeBackend(ModelFiles.from_file(onnx_file, OnnxRuntimeBackend), threads).run,
            "OpenVINO FP32": OpenVinoBackend(ModelFiles.from_file(onnx_file, OpenVinoBackend), threads).run,
            "ONNX Runtime INT8 (own Q/DQ placement)": OnnxRuntimeBackend(
                ModelFiles.from_file(ort_int8, OnnxRuntimeBackend), threads, "int8"
            ).run,
            "OpenVINO INT8 (NNCF)": OpenVinoBackend(
                ModelFiles.from_file(work / "int8" / "model.xml", OpenVinoBackend), threads, "int8"
            ).run,
            "LiteRT FP32 (XNNPACK)": litert["fp32"].run,
            "LiteRT INT8 (full integer, XNNPACK)": litert["int8"].run,
        }
        for precision, bundle in bundles.items():
            candidates[f"edgekit {precision} bundle ({bundle.backend}, incl. softmax)"] = bundle.probabilities
        rows = []
        rng = np.random.default_rng(0)
        for size in (1, 8):
            batch = rng.standard_normal((size, 3, 224, 224)).astype(np.float32)
            iterations = args.iterations if size == 1 else max(10, args.iterations // 4)
            protocol = TimingProtocol(args.warmup, iterations)  # every runtime timed in turns: one loop, no drift
            timings = time_runs(
                list(candidates.values()), [batch] * len(candidates), protocol, None, progress, f"b{size}"
            )
            for name, timing in zip(candidates, timings):
                rows.append({"runtime": name, **timing.to_dict()})
                progress.note(f"{name:<45} batch {size}: p50 {timing.p50_ms:.2f} ms")

        accuracy = {}
        if args.accuracy:
            test = write_image_folder(work / "test", "test", 1000, seed=0)  # the whole test split: 1,000 per class
            for target in ("x86-cpu", "arm-cpu"):
                accuracy[target] = _int8_accuracy(checkpoint, work, test, target, threads, progress)

    results = {
        "checkpoint": str(checkpoint),
        "input": [3, 224, 224],
        "rows": rows,
        "int8_accuracy": accuracy.get("x86-cpu"),
        "litert_int8_accuracy": accuracy.get("arm-cpu"),
        "environment": environment(threads),
    }
    results["environment"]["libraries"].update(LiteRtBackend.versions())
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cpu_backends.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "cpu_backends.md").write_text(_markdown(results))
    print((args.out / "cpu_backends.md").read_text())


def _int8_accuracy(
    checkpoint: Path, work: Path, test: Path, target: str, threads: int, progress: Progress
) -> dict[str, Any]:
    """INT8 bundle vs FP32 PyTorch on every Fashion-MNIST test image, at the checkpoint's own preprocessing."""
    calib = work / "calib"
    out = work / f"int8-native-{target}"
    config = CompileConfig(model=checkpoint, target=get_target(target), out=out, precision="int8", calib=calib)
    compile_bundle(config, progress)
    bundle = BundleModel.open(out, threads=threads)
    evalset = load_eval_set(test, bundle.class_names, bundle.preprocessing, None, progress)
    reference = TorchReference(load_checkpoint(checkpoint).module, threads)
    predictions = {
        "reference": run_batched(reference.run, evalset.batch.inputs, 32, progress, "FP32").argmax(1),
        "bundle": run_batched(bundle.runner.run, evalset.batch.inputs, 32, progress, "INT8").argmax(1),
    }
    assert evalset.labels is not None
    result = score(predictions, evalset.labels, bundle.class_names, reference="reference")
    models = result["models"]
    return {
        "images": result["images"],
        "target": target,
        "backend": bundle.backend,
        "fp32_top1": models["reference"]["top1"],
        "int8_top1": models["bundle"]["top1"],
        "drop_pts": (models["reference"]["top1"] - models["bundle"]["top1"]) * 100,
        "top1_agreement": models["bundle"]["top1_agreement_with_reference"],
        "input": bundle.preprocessing.crop,
    }


def _markdown(results: dict[str, Any]) -> str:
    env = results["environment"]
    lines = [
        "# GoogLeNet on the CPU, 224×224: FP32 and INT8",
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
    for accuracy in (results.get("int8_accuracy"), results.get("litert_int8_accuracy")):
        if not accuracy:
            continue
        lines += [
            "",
            f"INT8 accuracy ({accuracy.get('target', 'x86-cpu')} {accuracy['backend']} bundle, {accuracy['input']}×"
            f"{accuracy['input']} as trained) on all {accuracy['images']:,} Fashion-MNIST test images: FP32 top-1 "
            f"{accuracy['fp32_top1']:.2%}, INT8 top-1 {accuracy['int8_top1']:.2%} (drop {accuracy['drop_pts']:.2f} "
            f"pts), top-1 agreement {accuracy['top1_agreement']:.2%}.",
        ]
    lines += [
        "",
        "LiteRT rows are the `arm-cpu` target's .tflite files measured on this x86-64 host, not on an ARM "
        "board: latency there will differ.",
    ]
    lines += ["", f"Reproduce: `.venv/bin/python benchmarks/cpu_backends.py` (checkpoint: {results['checkpoint']})."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
