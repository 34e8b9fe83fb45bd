"""The accuracy guard on real models: what each rung of the ladder achieved, and what compile chose.

Models (Fashion-MNIST, trained here: no ImageNet weights can be downloaded):
- well-trained (with --well-trained): e.g. benchmarks/prune_methods.py's base model (12,000 images, 48×48);
- demo: `make demo`'s recipe (1,500 images, 4 epochs, 96×96), briefly trained;
- longer-trained: 3,000 images, 4 epochs, 64×64 (what a 2-core machine trains in minutes);
- the same, as a plain state_dict: the same weights with no metadata (transform_input not recorded, class
  names generated): compile decides transform_input from the images;
- pruned: the longer-trained model with 30 % of channels removed and one distilled recovery epoch on 500
  images.

Each is compiled with the default `edgekit compile --precision int8 --calib DIR` for x86-cpu (every backend
the target lists is built, guarded on held-out calibration images and timed; the ladder climbs until one
passes) with `--val` = 2,000 labelled test images never calibrated on, so each rung's top-1 drop is measured
too. Then the issue-17 budget case: `--max-accuracy-drop 0.5` judged on 420 labelled images, with the guard off.

    .venv/bin/python benchmarks/accuracy_guard.py [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from edgekit.core.progress import Progress
from edgekit.data.datasets import FASHION_MNIST
from edgekit.data.fashion_mnist import write_image_folder
from edgekit.measure.environment import environment
from edgekit.model.finetune import FinetuneConfig, run_finetune
from edgekit.optimize.ladder import GuardFailure
from edgekit.optimize.prune_config import PruneConfig, PruneSettings
from edgekit.pipeline.compile_config import CompileConfig
from edgekit.pipeline.precision_auto import compile_model
from edgekit.pipeline.prune import run_prune

WELL = "longer-trained (64², 3,000 images × 4 epochs)"


def _train(tmp: Path, progress: Progress) -> dict[str, Path]:
    models = {}
    demo = tmp / "demo.pt"
    run_finetune(FinetuneConfig(data=FASHION_MNIST, out=demo, weights="none", per_class=150, val_per_class=30,
                                epochs=4, lr=0.05, resize=110, crop=96, seed=0), progress)  # fmt: skip
    models["demo (96², 1,500 images × 4 epochs)"] = demo
    well = tmp / "well.pt"
    run_finetune(FinetuneConfig(data=FASHION_MNIST, out=well, weights="none", per_class=300, val_per_class=30,
                                epochs=4, lr=0.05, resize=72, crop=64, seed=0), progress)  # fmt: skip
    models[WELL] = well
    plain = tmp / "plain.pth"
    torch.save(torch.load(well, weights_only=True)["model_state_dict"], plain)
    models["longer-trained as a plain state_dict (transform_input not recorded)"] = plain
    recover = write_image_folder(tmp / "recover", "train", 50, seed=11)
    pruned = tmp / "pruned.pt"
    settings = PruneSettings(ratio=0.3, recover_data=recover, recover_epochs=1, distill=True)
    run_prune(PruneConfig(model=well, out=pruned, settings=settings, target="x86-cpu"), progress)
    models["pruned (longer-trained, 30 % of channels, 1 distilled epoch)"] = pruned
    return models


def _rows(manifest: Any) -> list[dict[str, Any]]:
    return _rows_of(manifest.section("selection"))


def _rows_of(selection: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for index, rung in enumerate(selection["rungs"]):
        guard = rung.get("guard", {})
        top1 = rung.get("vs_fp32_top1", {})
        rows.append({
            "setting": rung["setting"], "verdict": rung["verdict"], "chosen": index == selection.get("chosen"),
            "agreement": guard.get("top1_agreement"), "agreement_ci95": guard.get("top1_agreement_ci95"),
            "held_out": guard.get("images"), "drop_pts": top1.get("drop_pts"), "drop_ci95": top1.get("ci95_pts"),
            "labelled": top1.get("images"), "p50_ms": rung.get("p50_ms"), "error": rung.get("error"),
        })  # fmt: skip
    return rows


def _line(model: str, row: dict[str, Any]) -> str:
    def pct(value: Any) -> str:
        return "–" if value is None else f"{value:.2%}"

    agreement = pct(row["agreement"])
    if row["agreement_ci95"]:
        agreement += f" ({row['agreement_ci95'][0]:.1%}–{row['agreement_ci95'][1]:.1%})"
    drop = "–"
    if row["drop_pts"] is not None:
        drop = f"{row['drop_pts']:.2f} ({row['drop_ci95'][0]:.2f} to {row['drop_ci95'][1]:.2f})"
    p50 = "–" if row["p50_ms"] is None else f"{row['p50_ms']:.2f}"
    verdict = row["verdict"] + (" **← chosen**" if row["chosen"] else "")
    return f"| {model} | {row['setting']} | {agreement} | {drop} | {p50} | {verdict} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--well-trained", type=Path, default=None,
                        help="also a well-trained checkpoint (e.g. benchmarks/prune_methods.py's)")  # fmt: skip
    parser.add_argument("--well-trained-as", default="given", help="how --well-trained was trained, in words")
    parser.add_argument("--render", action="store_true", help="only rewrite the .md from the .json")
    args = parser.parse_args()
    if args.render:
        results = json.loads((args.out / "accuracy_guard.json").read_text())
        (args.out / "accuracy_guard.md").write_text(render(results))
        return
    progress = Progress()
    started = time.time()
    results: dict[str, Any] = {"models": {}, "environment": environment(threads=0)}
    with tempfile.TemporaryDirectory() as work:
        tmp = Path(work)
        calib = write_image_folder(tmp / "calib", "train", 80, seed=7)  # 800: 500 held out, 256 calibrate
        test = write_image_folder(tmp / "test", "test", 200, seed=1)  # 2,000 labelled, never calibrated on
        small = write_image_folder(tmp / "small", "test", 42, seed=3)  # 420: the budget case
        models = _train(tmp, progress)
        if args.well_trained is not None:
            models = {f"well-trained ({args.well_trained_as})": args.well_trained, **models}
        for name, checkpoint in models.items():
            plain = "plain" in name  # no preprocessing recorded: the input size is given, as a user would
            config = CompileConfig(
                model=checkpoint, target="x86-cpu", precision="int8", calib=calib, val=test, parity_images=2000,
                out=tmp / f"bundle-{len(results['models'])}", resize=72 if plain else None, crop=64 if plain else None,
            )  # fmt: skip
            began = time.time()
            try:
                manifest = compile_model(config, progress)
            except GuardFailure as failure:  # exit 2 for a user: every rung is still in the table
                rows = _rows_of({**failure.record, "chosen": None})
                results["models"][name] = {"rungs": rows, "exit_2": str(failure),
                                           "compile_s": round(time.time() - began)}  # fmt: skip
                continue
            accuracy = manifest.section("accuracy")["models"]
            results["models"][name] = {
                "rungs": _rows(manifest),
                "guard": manifest.section("quantization")["guard"],
                "keep_fp32": manifest.section("quantization")["keep_fp32"],
                "backend": manifest.backend,
                "fp32_top1": accuracy["reference"]["top1"],
                "fp32_top1_ci95": accuracy["reference"]["top1_ci95"],
                "int8_top1": accuracy["bundle"]["top1"],
                "transform_input": manifest.transform_input,
                "transform_input_source": manifest.section("model").get("transform_input_source"),
                "compile_s": round(time.time() - began),
            }
        well = models[WELL]
        budget = CompileConfig(
            model=well, target="x86-cpu", precision="int8", backend="onnxruntime", calib=calib, val=small,
            max_accuracy_drop=0.5, min_agreement=0.0, out=tmp / "budget",
        )  # fmt: skip
        manifest = compile_model(budget, progress)
        results["budget_case"] = {
            "rungs": _rows(manifest),
            "keep_fp32": manifest.section("quantization")["keep_fp32"],
            "note": manifest.section("selection").get("note"),
        }
    results["total_s"] = round(time.time() - started)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "accuracy_guard.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "accuracy_guard.md").write_text(render(results))
    print(render(results))


def _features(env: dict[str, Any]) -> str:
    features = env.get("cpu_features")
    return f"CPU features: {', '.join(features)}" if features else "CPU features not recorded by this older run"


def render(results: dict[str, Any]) -> str:
    """The .md, from the .json alone: every figure in it is one the run recorded."""
    env = results["environment"]
    lines = [
        "# The accuracy guard: every rung tried, per model (x86-cpu INT8, default compile)",
        "",
        f"{env['date']}, {env['cpu']} ({_features(env)}), {env['logical_cores']} logical cores; one run, "
        f"{results['total_s']} s in all.",
        "Agreement: top-1 agreement with FP32 on the held-out calibration images (never calibrated on), 95 % Wilson",
        "interval. Drop: top-1 points lost against FP32 on 2,000 labelled Fashion-MNIST test images, paired 95 %",
        "interval. p50: batch-1 latency on this machine, edgekit's latency protocol. Floor: 99 % agreement.",
        "",
        "| model | build | agreement | top-1 drop, pts | p50 ms | verdict |",
        "|---|---|---:|---:|---:|---|",
    ]
    for name, model in results["models"].items():
        lines += [_line(name, row) for row in model["rungs"]]
    lines += ["", "| model | FP32 top-1 | chosen INT8 top-1 | backend | kept in FP32 | transform_input | compile s |",
              "|---|---:|---:|---|---|---|---:|"]  # fmt: skip
    for name, model in results["models"].items():
        if "exit_2" in model:
            lines.append(f"| {name} | – | – | – | – | – | {model['compile_s']} (exit 2: no build passes) |")
            continue
        lines.append(
            f"| {name} | {model['fp32_top1']:.2%} ({model['fp32_top1_ci95'][0]:.1%}–{model['fp32_top1_ci95'][1]:.1%}) "
            f"| {model['int8_top1']:.2%} | {model['backend']} | {', '.join(model['keep_fp32']) or 'none'} "
            f"| {model['transform_input']} ({model['transform_input_source']}) | {model['compile_s']} |"
        )
    case = results["budget_case"]
    lines += [
        "",
        "## Budget on a small validation set (issue 17's case)",
        "",
        "`--backend onnxruntime --max-accuracy-drop 0.5 --min-agreement 0`, the drop judged on "
        f"{', '.join(sorted({str(row['labelled']) for row in case['rungs']}))} labelled images (compile's "
        "--parity-images cap):",
        "",
        "| model | build | agreement | top-1 drop, pts | p50 ms | verdict |",
        "|---|---|---:|---:|---:|---|",
        *[_line("longer-trained", row) for row in case["rungs"]],
        "",
        f"Kept in FP32: {', '.join(case['keep_fp32']) or 'nothing'}. {case['note'] or ''}",
        "",
        f"Reproduce: `.venv/bin/python {env.get('command', 'benchmarks/accuracy_guard.py')}` (`--render` rewrites this "
        "file from the JSON).",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
