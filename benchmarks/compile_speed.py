"""What edgekit costs a user (issue 27), one run on this machine:

1. The default INT8 compile of a GoogLeNet at 224² (`edgekit compile MODEL --precision int8 --calib DIR`:
   this host's target, its backends, the accuracy guard at its defaults), wall-clock from the command line,
   against NNCF alone quantizing the same ONNX (the floor of what quantizing costs). Target: within 60 s.
2. edgekit's OpenVINO INT8 bundle against OpenVINO itself on the same IR (the bundle's own model.xml,
   compiled by `openvino.Core` with the same threads and hints, one infer request), batch 1, timed in turns
   by the one timing loop: p50 and p90 of each and their ratio. Target: within 1.05×.

The model: a 7-class GoogLeNet edgekit has never seen, fine-tuned from scratch for a few epochs on 700
Fashion-MNIST training images at 224² (greyscale, upscaled); 259 other training images calibrate (the
issue's count); 700 test images measure the shipped bundle's agreement with FP32 afterwards.

    .venv/bin/python benchmarks/compile_speed.py --work /tmp/compile-speed --out benchmarks/results/compile_speed
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.core.progress import Progress
from edgekit.data.fashion_mnist import write_image_folder
from edgekit.measure.environment import environment
from edgekit.measure.evaluate import load_eval_set, run_batched
from edgekit.measure.latency import TimingProtocol, time_in_turns
from edgekit.measure.stats import top1_agreement
from edgekit.model.finetune import FinetuneConfig, run_finetune
from edgekit.runtime.model import BundleModel

CLASSES = (0, 1, 2, 3, 5, 7, 9)  # t-shirt, trouser, pullover, dress, sandal, sneaker, ankle boot
THREADS = 2
EDGEKIT = str(Path(sys.executable).with_name("edgekit"))


def _folders(work: Path) -> dict[str, Path]:
    folders = {"train": work / "train", "calib": work / "calib", "test": work / "test"}
    if not folders["train"].exists():
        write_image_folder(folders["train"], "train", 100, CLASSES, seed=0)
        write_image_folder(folders["calib"], "train", 37, CLASSES, seed=0, skip=100)  # never trained on
        write_image_folder(folders["test"], "test", 100, CLASSES, seed=0)
    return folders


def _compile(checkpoint: Path, calib: Path, out: Path, *extra: str) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    result = subprocess.run(
        [EDGEKIT, "compile", str(checkpoint), "--precision", "int8", "--calib", str(calib), "--out", str(out),
         "--force", "--threads", str(THREADS), *extra],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"compile failed ({result.returncode}):\n{result.stderr[-3000:]}")
    sys.stderr.write(result.stderr)
    return seconds, json.loads((out / "manifest.json").read_text())


def _nncf_alone(fp32_onnx: Path, calib_inputs: np.ndarray) -> float:
    """NNCF's default INT8 quantization of the same ONNX, timed alone (import excluded, as for a warm user)."""
    import nncf
    import openvino as ov

    model = ov.Core().read_model(str(fp32_onnx))
    started = time.perf_counter()
    nncf.quantize(model, nncf.Dataset([inputs[None] for inputs in calib_inputs]), subset_size=len(calib_inputs))
    return time.perf_counter() - started


def _wrapper_overhead(bundle: Path, progress: Progress) -> dict[str, Any]:
    import openvino as ov

    model = BundleModel.open(bundle, threads=THREADS)
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": THREADS}
    compiled = ov.Core().compile_model(str(bundle / model.manifest.model_file), "CPU", config)
    request = compiled.create_infer_request()
    batch = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    protocol = TimingProtocol(warmup=20, iterations=1000)
    edgekit_run, openvino_run = time_in_turns(
        [lambda: model.runner.run(batch), lambda: request.infer({0: batch})], protocol, progress=progress,
        desc="edgekit vs OpenVINO",
    )  # fmt: skip
    return {
        "protocol": f"warm-up {protocol.warmup}, {protocol.iterations} calls each, in turns, batch 1",
        "edgekit": edgekit_run.to_dict() | {"samples_ms": None},
        "openvino": openvino_run.to_dict() | {"samples_ms": None},
        "p50_ratio": edgekit_run.p50_ms / openvino_run.p50_ms,
        "p90_ratio": (edgekit_run.p90_ms or 0) / (openvino_run.p90_ms or 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="results: <out>.json and <out>.md")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    progress = Progress()
    args.work.mkdir(parents=True, exist_ok=True)
    folders = _folders(args.work)
    checkpoint = args.work / "googlenet7.pt"
    if not checkpoint.exists():
        started = time.perf_counter()
        run_finetune(FinetuneConfig(data=str(folders["train"]), out=checkpoint, weights="none", epochs=args.epochs,
                                    lr=0.05, resize=256, crop=224, threads=THREADS), progress)  # fmt: skip
        progress.note(f"trained in {(time.perf_counter() - started) / 60:.1f} min")

    default_s, default = _compile(checkpoint, folders["calib"], args.work / "int8-default")
    openvino_s, _ = _compile(checkpoint, folders["calib"], args.work / "int8-openvino", "--backend", "openvino")
    bundle = BundleModel.open(args.work / "int8-default", threads=THREADS)
    test = load_eval_set(folders["test"], bundle.class_names, bundle.preprocessing, None, progress)
    from edgekit.measure.reference import load_reference

    reference = load_reference(checkpoint, THREADS, bundle.manifest.transform_input)
    agreement = top1_agreement(
        run_batched(reference.run, test.batch.inputs, 16, progress, "FP32"),
        run_batched(bundle.runner.run, test.batch.inputs, 16, progress, "bundle"),
    )
    from edgekit.export.onnx_export import export_onnx
    from edgekit.model.checkpoint import load_checkpoint

    fp32_onnx = args.work / "fp32.onnx"
    export_onnx(load_checkpoint(checkpoint).module, fp32_onnx, 224, 13)
    calib = load_eval_set(folders["calib"], bundle.class_names, bundle.preprocessing, None, progress).batch.inputs
    nncf_s = _nncf_alone(fp32_onnx, calib)
    guard = default["quantization"]["guard"]
    results = {
        "machine": environment(THREADS),
        "model": "GoogLeNet, 7 classes, 224², trained here from scratch on 700 Fashion-MNIST images",
        "calibration_images": len(calib),
        "default_int8_compile": {
            "seconds": default_s,
            "target_seconds": 60,
            "backend": default["backend"],
            "rungs": [r["setting"] for r in default["selection"]["rungs"]],
            "guard": {k: guard.get(k) for k in ("images", "top1_agreement", "top1_agreement_ci95", "verdict", "note")},
            "test_agreement": agreement.to_dict(),
        },
        "openvino_int8_compile_seconds": openvino_s,
        "nncf_alone_seconds": nncf_s,
        "wrapper_vs_openvino": _wrapper_overhead(args.work / "int8-openvino", progress),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(_markdown(results))
    print(_markdown(results))


def _markdown(results: dict[str, Any]) -> str:
    compile_ = results["default_int8_compile"]
    wrapper = results["wrapper_vs_openvino"]
    machine = results["machine"]
    low, high = compile_["test_agreement"]["top1_agreement_ci95"]
    lines = [
        "# What edgekit costs: the default INT8 compile, and the OpenVINO bundle against OpenVINO",
        "",
        f"One run, {machine['date']}, {machine['cpu']} ({machine['threads']} threads). {results['model']}; "
        f"{results['calibration_images']} calibration images. Script: `benchmarks/compile_speed.py`.",
        "",
        "| | seconds |",
        "|---|---:|",
        f"| `edgekit compile --precision int8 --calib` (defaults; chose {compile_['backend']}) | "
        f"{compile_['seconds']:.1f} (target {compile_['target_seconds']}) |",
        f"| `edgekit compile ... --backend openvino` | {results['openvino_int8_compile_seconds']:.1f} |",
        f"| NNCF alone on the same ONNX (the floor) | {results['nncf_alone_seconds']:.1f} |",
        "",
        f"Rungs built: {'; '.join(compile_['rungs'])}. Guard: {compile_['guard']['verdict']} "
        f"({compile_['guard']['top1_agreement']:.2%} on {compile_['guard']['images']} held-out images"
        + (f"; {compile_['guard']['note']}" if compile_["guard"].get("note") else "")
        + f"). The shipped bundle against FP32 on {compile_['test_agreement']['images']} test images: "
        f"{compile_['test_agreement']['top1_agreement']:.2%} ({low:.2%}–{high:.2%}).",
        "",
        f"## edgekit's OpenVINO INT8 bundle vs OpenVINO on the same IR ({wrapper['protocol']})",
        "",
        "| | p50 ms | p90 ms | n |",
        "|---|---:|---:|---:|",
        *(
            f"| {what} | {wrapper[key]['p50_ms']:.3f} | {wrapper[key]['p90_ms']:.3f} | {wrapper[key]['iterations']} |"
            for key, what in (("edgekit", "edgekit (`BundleModel.runner.run`)"), ("openvino", "OpenVINO (`infer`)"))
        ),
        f"| ratio (target ≤ 1.05) | {wrapper['p50_ratio']:.3f} | {wrapper['p90_ratio']:.3f} | |",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
