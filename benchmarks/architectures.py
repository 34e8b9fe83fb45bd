"""Issue 29's benchmark: edgekit's default INT8 for each torchvision family, against OpenVINO + NNCF INT8 on
the same ONNX (the peer), in one run on one machine.

Per family (ResNet-18, ResNet-50, MobileNetV2, MobileNetV3-Large, EfficientNet-B0, DenseNet-121, VGG-16,
Inception v3), plus a pruned ResNet-18 and MobileNetV2:

- training as the pruning benchmarks train their base model, shortened so eight families fit one run:
  from scratch with `edgekit finetune` on Fashion-MNIST image folders (2,000 training images, 48×48;
  Inception v3 80×80, its smallest workable size with margin), 4 epochs, SGD lr 0.02, cosine;
- accuracy at that training size: edgekit's default INT8 compile for the x86-cpu target (`--calib` 760
  training-split images disjoint from the training set, nothing else: compile calibrates on 256 and holds 500
  back for its guard, the count its guard needs to tell 98 % from a 99 % floor) and the peer (NNCF's defaults
  on the same 256 calibration images), each compared with FP32 PyTorch on 1,000 test-split images neither saw:
  top-1 agreement with its 95 % Wilson interval, and FP32 top-1 on the labels (a model near chance makes
  agreement easy);
- latency at the full size with the same weights (224², Inception v3 299²): edgekit FP32 and INT8 bundles
  compiled at that size, and the peer's INT8 model, batch 1, timed in turns (`measure.latency`). The INT8
  bundle is chosen as compile chooses, by speed among the builds that ship, where the builds that ship are
  those the guard passed at the training size (where accuracy is measured): each such backend's build is
  compiled at the full size and timed with the others, and `fastest_first` picks.

Targets: edgekit's INT8 p50 within 1.05× of the peer's while agreeing ≥ 99 % (or refusing with the reason).

    .venv/bin/python benchmarks/architectures.py [--out benchmarks/results] [--families resnet18,...]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgekit.backends.base import ModelFiles
from edgekit.backends.openvino.run import OpenVinoBackend
from edgekit.core.errors import EdgekitError
from edgekit.core.progress import Progress
from edgekit.core.threads import resolve_threads
from edgekit.data.calibration import calibration_inputs
from edgekit.data.fashion_mnist import write_image_folder
from edgekit.export.onnx_export import export_onnx
from edgekit.measure.decide import SHIPS, AgreementFloor, fastest_first
from edgekit.measure.environment import environment
from edgekit.measure.evaluate import load_eval_set, run_batched
from edgekit.measure.latency import TimingProtocol, time_runs
from edgekit.measure.stats import TopOneAgreement, top1_agreement
from edgekit.model.checkpoint import load_checkpoint
from edgekit.model.finetune import FinetuneConfig, run_finetune
from edgekit.optimize.prune_config import PruneConfig, PruneSettings
from edgekit.pipeline.compile import compile_bundle
from edgekit.pipeline.compile_config import CompileConfig
from edgekit.pipeline.prune import run_prune
from edgekit.runtime.model import BundleModel
from edgekit.targets import get_target

FAMILIES = ("resnet18", "resnet50", "mobilenet_v2", "mobilenet_v3_large", "efficientnet_b0", "densenet121", "vgg16",
            "inception_v3")  # fmt: skip
PRUNED = ("resnet18", "mobilenet_v2")
PRUNE_RATIO = 0.3
FULL = {"inception_v3": (342, 299)}  # (resize, crop) for latency; the others 256/224
TRAIN_CROP = {"inception_v3": 80}
TARGET_RATIO, TARGET_AGREEMENT = 1.05, 0.99
TRAIN_PER_CLASS, CALIB_PER_CLASS, TEST_PER_CLASS = 200, 76, 100
CALIB_SIZE = 256  # compile's default --calib-size; the other 500 of the 760 are the guard's held-out images


def _peer_int8(fp32_onnx: Path, calibration: np.ndarray, out: Path, threads: int) -> OpenVinoBackend:
    """OpenVINO + NNCF INT8 with NNCF's defaults, as an integrator would make it from the same ONNX file."""
    import nncf
    import openvino as ov

    model = ov.Core().read_model(str(fp32_onnx))
    samples = [calibration[i : i + 1] for i in range(len(calibration))]
    with contextlib.redirect_stdout(sys.stderr):
        quantized = nncf.quantize(model, nncf.Dataset(samples), subset_size=len(samples))
    out.mkdir(parents=True, exist_ok=True)
    ov.save_model(quantized, str(out / "model.xml"))
    return OpenVinoBackend(ModelFiles.from_file(out / "model.xml", OpenVinoBackend), threads, "int8")


def _agreement(reference: np.ndarray, other: np.ndarray) -> dict[str, Any]:
    agreement = top1_agreement(reference, other)  # the one agreement computation
    return {"agreement": agreement.rate, "ci95": list(agreement.interval()), "n": agreement.n}


def _meets_floor(record: dict[str, Any]) -> bool:
    """The one accuracy rule at the 99 % floor: "pass" or "unconfirmed" ship, as they would in compile."""
    n = record["n"]
    verdict = AgreementFloor(TARGET_AGREEMENT).judge(TopOneAgreement(n, round(record["agreement"] * n), ()))
    return verdict.verdict in ("pass", "unconfirmed")


def _compile(checkpoint: Path, out: Path, precision: str, calib: Path, threads: int, size: tuple[int, int] | None,
             progress: Progress, **chosen: Any) -> dict[str, Any]:  # fmt: skip
    """`edgekit compile` for x86-cpu; `chosen`: backend, method and min_agreement fixed (the full-size build)."""
    resize, crop = size if size is not None else (None, None)
    config = CompileConfig(
        model=checkpoint, target=get_target("x86-cpu"), out=out, precision=precision, calib=calib, threads=threads,
        resize=resize, crop=crop, **chosen,
    )  # fmt: skip
    try:
        manifest = compile_bundle(config, progress)
    except EdgekitError as exc:
        return {"refused": str(exc)}
    quantization = manifest.section("quantization")
    guard = quantization.get("guard") or {}
    rungs = manifest.section("selection").get("rungs", [])  # every build the ladder tried, with its verdict
    shipped = {r["backend"]: r["verdict"] for r in rungs if r.get("verdict") in SHIPS and r.get("rung") == "default"}
    return {"backend": manifest.backend, "guard_verdict": guard.get("verdict"), "judged_on": guard.get("judged_on"),
            "guard_images": guard.get("images"), "path": out,
            "method": quantization.get("method"), "keep_fp32": quantization.get("keep_fp32") or [],
            "shipped_defaults": shipped}  # fmt: skip


def _family(name: str, checkpoint: Path, folders: dict[str, Path], work: Path, threads: int,
            progress: Progress) -> dict[str, Any]:  # fmt: skip
    work.mkdir(parents=True, exist_ok=True)
    loaded = load_checkpoint(checkpoint)
    spec = loaded.preprocessing
    row: dict[str, Any] = {"model": name, "arch": loaded.arch, "train_crop": spec.crop}
    test = load_eval_set(folders["test"], loaded.class_names, spec, None, progress)
    with torch.inference_mode():
        fp32 = run_batched(lambda x: loaded.module(torch.from_numpy(x)).numpy(), test.batch.inputs, 32, progress,
                           "FP32").argmax(1)  # fmt: skip
    row["fp32_top1"] = float((fp32 == test.labels).mean())
    calibration = calibration_inputs(folders["calib"], spec, CALIB_SIZE).inputs  # the images compile calibrates on

    small = _compile(checkpoint, work / "int8-small", "int8", folders["calib"], threads, None, progress)
    shipping = _shipping(small)  # backend -> method: the builds compile could ship
    agreements: dict[str, dict[str, Any]] = {}
    for backend, method in list(shipping.items()):
        # Another backend's default passed on the half of the images the ladder chooses on; compile would ship
        # it, where it is the fastest, after judging it on all of them: its own guarded compile does that.
        built = small if backend == small["backend"] else _compile(
            checkpoint, work / f"int8-small-{backend}", "int8", folders["calib"], threads, None, progress,
            backend=backend, method=method,
        )  # fmt: skip
        if "refused" in built:
            row[f"edgekit INT8 {backend} not shipped"] = built["refused"]
            del shipping[backend]
            continue
        int8 = run_batched(BundleModel.open(built["path"], threads=threads).runner.run, test.batch.inputs, 32,
                           progress, f"INT8 {backend}").argmax(1)  # fmt: skip
        agreements[backend] = {"backend": backend, "guard": built["guard_verdict"], "method": built["method"],
                               "judged_on": built["judged_on"], "guard_images": built["guard_images"],
                               "keep_fp32": built["keep_fp32"], **_agreement(fp32, int8)}  # fmt: skip
    row["edgekit_int8"] = small if "refused" in small else agreements[small["backend"]]
    export_onnx(loaded.module, work / "small.onnx", spec.crop, 13)
    peer_small = _peer_int8(work / "small.onnx", calibration, work / "peer-small", threads)
    row["peer_int8"] = _agreement(fp32, run_batched(peer_small.run, test.batch.inputs, 32, progress, "peer").argmax(1))

    resize, crop = FULL.get(loaded.arch, (256, 224))
    row["latency_input"] = crop
    full_spec = spec.with_overrides(resize=resize, crop=crop)
    fp32_full = _compile(checkpoint, work / "fp32-full", "fp32", folders["calib"], threads, (resize, crop), progress)
    int8_builds = {
        backend: _compile(checkpoint, work / f"int8-full-{backend}", "int8", folders["calib"], threads, (resize, crop),
                          progress, backend=backend, method=method, min_agreement=0.0)
        for backend, method in shipping.items()
    }  # fmt: skip
    export_onnx(loaded.module, work / "full.onnx", crop, 13)
    peer_full = _peer_int8(work / "full.onnx", calibration_inputs(folders["calib"], full_spec, CALIB_SIZE).inputs,
                           work / "peer-full", threads)  # fmt: skip
    runs = {"peer INT8": peer_full.run}
    if "refused" in fp32_full:
        row["edgekit FP32 refused"] = fp32_full["refused"]
    else:
        runs["edgekit FP32"] = BundleModel.open(fp32_full["path"], threads=threads).runner.run
        row["edgekit FP32 backend"] = fp32_full["backend"]
    if "refused" in small:
        row["edgekit INT8 refused"] = "no INT8 build passed the guard at the training size"
    for backend, built in list(int8_builds.items()):
        if "refused" in built:  # not guarded at this size, so only a build error can refuse: said in the row
            row[f"edgekit INT8 {backend} refused"] = int8_builds.pop(backend)["refused"]
            continue
        runs[f"edgekit INT8 {backend}"] = BundleModel.open(built["path"], threads=threads).runner.run
    batch = np.random.default_rng(0).standard_normal((1, 3, crop, crop)).astype(np.float32)
    timings = time_runs(list(runs.values()), [batch] * len(runs), TimingProtocol(10, 100), None, progress, name)
    row["p50_ms"] = {label: timing.p50_ms for label, timing in zip(runs, timings)}
    row["p90_ms"] = {label: timing.p90_ms for label, timing in zip(runs, timings)}
    if int8_builds:  # compile's own choice among the builds that ship: the fastest, with its margin
        backends = list(int8_builds)
        fastest = backends[fastest_first([row["p50_ms"][f"edgekit INT8 {b}"] for b in backends])[0]]
        row["edgekit INT8 backend"] = fastest
        row["edgekit_int8"] = {**agreements[fastest], "shipping_backends": backends}
        row["p50_ms"]["edgekit INT8"] = row["p50_ms"][f"edgekit INT8 {fastest}"]
        row["p90_ms"]["edgekit INT8"] = row["p90_ms"][f"edgekit INT8 {fastest}"]
    return row


def _shipping(small: dict[str, Any]) -> dict[str, str | None]:
    """The INT8 builds compile could ship, backend -> calibration method, in the target file's order: the
    guard's choice at the training size (its backend and method) and every other backend whose default build
    the guard passed there. Compile picks among these by speed; the benchmark times them at the full size.

    The guard decides where accuracy means something (the training size: a model trained at 48² sees upscaled
    images at 224²), so the builds made from this are not guarded again (min_agreement 0). Groups the guard
    kept in FP32 at the training size are not kept at the full size (compile has no option for them): noted
    in the row."""
    if "refused" in small:
        return {}
    chosen: dict[str, str | None] = {small["backend"]: small["method"]}
    chosen.update({backend: None for backend in small["shipped_defaults"] if backend not in chosen})
    order = get_target("x86-cpu").backends["int8"]
    return {backend: chosen[backend] for backend in sorted(chosen, key=order.index)}


def _train(arch: str, folders: dict[str, Path], out: Path, progress: Progress) -> Path:
    crop = TRAIN_CROP.get(arch, 48)
    config = FinetuneConfig(
        data=str(folders["train"]), out=out, weights="none", arch=arch, epochs=4, lr=0.02, batch_size=32,
        resize=crop + crop // 8, crop=crop,
    )  # fmt: skip
    run_finetune(config, progress)
    return out


def _prune(checkpoint: Path, folders: dict[str, Path], out: Path, threads: int, progress: Progress) -> Path:
    settings = PruneSettings(ratio=PRUNE_RATIO, recover_data=folders["train"], recover_epochs=2)
    run_prune(PruneConfig(model=checkpoint, out=out, settings=settings, target="x86-cpu", threads=threads), progress)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--threads", type=int, default=0, help="0 = all cores")
    parser.add_argument("--render", action="store_true", help="only rewrite the .md from the .json")
    parser.add_argument(
        "--append", action="store_true", help="add these families' rows to the existing .json (a run split in parts)"
    )
    args = parser.parse_args()
    if args.render:
        results = json.loads((args.out / "architectures.json").read_text())
        (args.out / "architectures.md").write_text(render(results))
        return
    progress = Progress()
    threads = resolve_threads(args.threads)
    started = time.perf_counter()
    earlier = json.loads((args.out / "architectures.json").read_text()) if args.append else None
    rows: list[dict[str, Any]] = []

    def save() -> None:  # after every row: a long run that stops keeps what it measured
        results = {
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "environment": environment(threads),
            "minutes": round((time.perf_counter() - started) / 60, 1),
            "training": "from scratch, 2,000 Fashion-MNIST training images, 4 epochs, SGD lr 0.02 cosine, 48² "
            "(Inception v3 80²)",
            "calibration": "760 training-split images disjoint from the training set (compile: 256 calibrate, "
            "500 held out for the guard; the peer: the same 256)",
            "test_images": 1000,
            "rows": rows,
        }
        if earlier is not None:
            results = {**results, "parts": [*earlier.get("parts", [_part(earlier)]), _part(results)]}
            results["rows"] = [*earlier["rows"], *rows]
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "architectures.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
        (args.out / "architectures.md").write_text(render(results))

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        folders = {
            "train": write_image_folder(work / "train", "train", TRAIN_PER_CLASS, seed=0),
            "calib": write_image_folder(work / "calib", "train", CALIB_PER_CLASS, seed=0, skip=TRAIN_PER_CLASS),
            "test": write_image_folder(work / "test", "test", TEST_PER_CLASS, seed=1),
        }
        for arch in args.families.split(","):
            family_started = time.perf_counter()
            checkpoint = _train(arch, folders, work / f"{arch}.pt", progress)
            rows.append(_family(arch, checkpoint, folders, work / arch, threads, progress))
            rows[-1]["minutes"] = round((time.perf_counter() - family_started) / 60, 1)
            save()
            if arch in PRUNED:
                pruned = _prune(checkpoint, folders, work / f"{arch}-pruned.pt", threads, progress)
                rows.append(_family(f"{arch} pruned {PRUNE_RATIO:.0%}", pruned, folders, work / f"{arch}-p", threads,
                                    progress))  # fmt: skip
                save()


def _part(results: dict[str, Any]) -> dict[str, Any]:
    """When and on what one part of a split run ran, and which rows it measured."""
    return {
        "date": results["date"],
        "cpu": results["environment"].get("cpu"),
        "minutes": results["minutes"],
        "models": [row["model"] for row in results["rows"]],
    }


def _fmt_agreement(record: dict[str, Any], refusals: list[str]) -> str:
    if "refused" in record:  # the reason is long: a numbered note under the table carries it whole
        if record["refused"] not in refusals:
            refusals.append(record["refused"])
        return f"refused ({refusals.index(record['refused']) + 1})"
    low, high = record["ci95"]
    return f"{record['agreement']:.2%} ({low:.1%}–{high:.1%})"


def render(results: dict[str, Any]) -> str:
    env = results["environment"]
    lines = [
        "# edgekit INT8 per architecture, against OpenVINO + NNCF INT8 (the peer)",
        "",
        f"Run {results['date']} on {env.get('cpu', '?')} ({env.get('threads', '?')} threads; CPU features: "
        f"{', '.join(env.get('cpu_features', [])) or 'n/a'}); Python {env.get('python', '?')}; "
        + ", ".join(f"{k} {v}" for k, v in env.get("libraries", {}).items())
        + f"; {results['minutes']} min in all."
        + "".join(
            f" Part {i}: {part['date']}, {part['minutes']} min, {', '.join(part['models'])}"
            + (f" ({part['note']})." if part.get("note") else ".")
            for i, part in enumerate(results.get("parts", []), 1)
        ),
        "",
        f"Models: {results['training']}. Calibration: {results['calibration']}. Agreement: top-1 agreement with "
        f"the FP32 PyTorch model on {results['test_images']:,} test-split images no build saw, at the training "
        "size, with its 95 % Wilson interval. Latency: batch 1 p50 at the full input size (same weights), "
        "edgekit's bundles and the peer timed in turns in one loop. edgekit's guard decides at the training size "
        "(where accuracy is measured); at the full size, each backend whose build the guard passed there is "
        "compiled with the same settings and timed with the others, and the fastest is taken by compile's own "
        "rule (`fastest_first`, 15 % margin): its agreement is the one shown. A model edgekit refuses has no "
        "full-size INT8 row. Groups the guard kept in FP32 at the training size are listed; the full-size build "
        "quantizes them. edgekit's OpenVINO INT8 is NNCF too, with its own settings.",
        "",
        "| model | FP32 top-1 | edgekit INT8 agreement | edgekit INT8 build (kept in FP32) "
        "| peer INT8 agreement | input | edgekit FP32 p50 "
        "| edgekit INT8 p50 | peer INT8 p50 | edgekit/peer | targets met |",
        "|---|---:|---|---|---|---:|---:|---:|---:|---:|---|",
    ]
    refusals: list[str] = []
    order = {name: i for i, name in enumerate(FAMILIES)}  # the order, whatever order the run took
    for row in sorted(results["rows"], key=lambda row: order.get(row["arch"], len(order))):
        p50 = row["p50_ms"]
        ours, peer = p50.get("edgekit INT8"), p50.get("peer INT8")
        ratio = ours / peer if ours and peer else None
        edge = row["edgekit_int8"]
        agreement_ok = "refused" in edge or _meets_floor(edge)
        met = "refused" in edge or (ratio is not None and ratio <= TARGET_RATIO and agreement_ok)
        peer_note = "" if _meets_floor(row["peer_int8"]) else " (below 99 %)"
        lines.append(
            f"| {row['model']} | {row['fp32_top1']:.1%} | {_fmt_agreement(edge, refusals)} | "
            f"{_build(edge)} | "
            f"{_fmt_agreement(row['peer_int8'], refusals)}{peer_note} | {row['latency_input']}² | "
            f"{_ms(p50.get('edgekit FP32'))} | {_ms(ours)} | {_ms(peer)} | "
            f"{f'{ratio:.2f}×' if ratio else '—'} | {'yes' if met else 'no'} |"
        )
    lines += ["", *(f"({i}) {reason}" for i, reason in enumerate(refusals, 1))] if refusals else []
    lines += [
        "",
        f"Targets: edgekit's INT8 p50 within {TARGET_RATIO}× of the peer's while agreeing ≥ {TARGET_AGREEMENT:.0%} "
        "(or refusing with the reason). `peer … (below 99 %)`: NNCF's defaults alone would have shipped that.",
        "",
        "Reproduce: `.venv/bin/python benchmarks/architectures.py` (`--render` rewrites this file from the JSON).",
    ]
    return "\n".join(lines) + "\n"


def _build(edge: dict[str, Any]) -> str:
    if "refused" in edge:
        return "—"
    kept = edge.get("keep_fp32") or []
    method = f", {edge['method']}" if edge.get("method") else ""
    others = [b for b in edge.get("shipping_backends", []) if b != edge.get("backend")]
    faster_than = f"; faster than {', '.join(others)}" if others else ""
    judged = {"all": "all", "confirmation": "the half not used to choose it:"}.get(edge.get("judged_on") or "", "")
    guard = f"; guard: {edge['guard']} on {judged} {edge.get('guard_images')} images" if edge.get("judged_on") else ""
    return f"{edge.get('backend', '?')}{method}" + (f" ({', '.join(kept)})" if kept else "") + faster_than + guard


def _ms(value: float | None) -> str:
    return f"{value:.2f} ms" if value is not None else "—"


if __name__ == "__main__":
    main()
