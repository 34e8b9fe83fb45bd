"""Pruning that keeps a well-trained model's accuracy: methods compared at the same MACs, then the ratio the
budget decides, and the fastest bundle within it against OpenVINO + NNCF INT8 on the unpruned model.

All in one run on one machine:

1. A GoogLeNet trained from scratch on 12,000 Fashion-MNIST training images (no ImageNet weights can be
   downloaded here) at 48×48 (this 2-core machine cannot train at 224² in the time it has); the held-out
   images are 3,000 Fashion-MNIST *test* images (300 per class), never trained or recovered on.
2. Methods, each pruning the same model to about the same MACs (uniform ratio 0.4, or the MACs it gives
   for global pruning) and recovering on the same 5,000 training images for the same epochs unless the
   row is about recovery: uniform vs global ratios, L2 magnitude vs Taylor importance, one-shot vs
   iterative with recovery between steps, cross-entropy vs distillation and its temperature, feature
   distillation at the inception stages' outputs, the learning-rate schedule (cosine, one-cycle, constant),
   recovery length. Every row: MACs removed, original / pruned / recovered top-1 with 95 % intervals, the paired
   drop against the original with its interval, and the recovery's cost (images × epochs × minutes).
3. `edgekit prune --max-accuracy-drop 1` with the default method: the search decides the ratio on 1,000
   training-split images held out from training (the test images stay unseen), then the chosen model is
   scored on the 3,000 test images.
4. INT8 bundles (x86-cpu, the accuracy guard on) of the unpruned and the searched model; accuracy at the
   trained input on the test images, latency at 224×224 batch 1, side by side in round-robin rounds.

    .venv/bin/python benchmarks/prune_methods.py [--checkpoint base.pt] [--work DIR] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgekit.core.progress import Progress
from edgekit.core.threads import resolve_threads
from edgekit.data.datasets import folder_dataset
from edgekit.data.fashion_mnist import write_image_folder
from edgekit.measure.environment import environment
from edgekit.measure.evaluate import load_eval_set, run_batched
from edgekit.measure.latency import TimingProtocol, time_runs
from edgekit.measure.stats import PairedDifference, wilson
from edgekit.model.checkpoint import load_checkpoint
from edgekit.model.finetune import FinetuneConfig, run_finetune
from edgekit.optimize.prune import Meter, correct_per_image
from edgekit.optimize.prune_config import PruneConfig, PruneSettings
from edgekit.pipeline.compile_config import CompileConfig
from edgekit.pipeline.precision_auto import compile_model
from edgekit.pipeline.prune import fp32_latency_meter, run_prune
from edgekit.runtime.model import BundleModel
from edgekit.targets import get_target

TARGET = "x86-cpu"
RATIO = 0.4


def _data(work: Path, per_class_recover: int) -> dict[str, Path]:
    folders = {
        "train": write_image_folder(work / "train", "train", 1200, seed=0),
        "recover": write_image_folder(work / "recover", "train", per_class_recover, seed=0),  # a subset of train
        "select": write_image_folder(work / "select", "train", 100, seed=0, skip=1200),  # never trained on
        "calib": write_image_folder(work / "calib", "train", 30, seed=0, skip=1300),
        "test": write_image_folder(work / "test", "test", 300, seed=0),
    }
    return folders


def _train(work: Path, folders: dict[str, Path], epochs: int, progress: Progress) -> Path:
    out = work / "base.pt"
    progress.note(f"training the base GoogLeNet: 12,000 images, {epochs} epochs, 48×48, from scratch")
    run_finetune(FinetuneConfig(data=str(folders["train"]), out=out, weights="none", epochs=epochs, lr=0.05,
                                resize=54, crop=48), progress)  # fmt: skip
    return out


def _methods(recover: Path, epochs: int, target_macs: float) -> dict[str, PruneSettings]:
    base = PruneSettings(ratio=RATIO, recover_data=recover, recover_epochs=epochs, distill=True)
    return {
        "uniform · L2 · one-shot · cross-entropy": dataclasses.replace(base, distill=False),
        "uniform · L2 · one-shot · distilled T=4": base,
        "uniform · L2 · one-shot · distilled T=2": dataclasses.replace(base, distill_temperature=2.0),
        "uniform · Taylor · one-shot · distilled T=4": dataclasses.replace(base, importance="taylor"),
        "global · L2 · one-shot · distilled T=4 (same MACs)": dataclasses.replace(
            base, ratio=None, target_macs=target_macs, scope="global"
        ),
        "uniform · L2 · iterative (2 steps) · distilled T=4": dataclasses.replace(base, steps=2),
        f"uniform · L2 · one-shot · distilled T=4 · {2 * epochs} epochs": dataclasses.replace(
            base, recover_epochs=2 * epochs
        ),
        "uniform · L2 · one-shot · distilled T=4 + inception features (3b, 4e, 5b)": dataclasses.replace(
            base, feature_distill=1.0
        ),
        "uniform · L2 · one-shot · distilled T=4 · one-cycle LR": dataclasses.replace(base, lr_schedule="onecycle"),
        "uniform · L2 · one-shot · distilled T=4 · constant LR": dataclasses.replace(base, lr_schedule="constant"),
    }


def _row(name: str, report: dict[str, Any], minutes: float, macs224: tuple[int, int]) -> dict[str, Any]:
    accuracy = report["accuracy"]
    recovery = report["recovery"] or {}
    return {
        "method": name,
        "ratio": report["ratio"],
        "macs_removed": report["macs_removed"],
        "macs_224": macs224[0],
        "original": accuracy["original"],
        "pruned": accuracy["pruned"],
        "final": accuracy["final"],
        "drop_vs_original": accuracy["drop_vs_original"],
        "recovery_images": recovery.get("images", 0),
        "recovery_epochs": recovery.get("epochs", 0),
        "minutes": minutes,
        "settings": report["settings"],
    }


def _top1_on(checkpoint: Path, test: Path) -> np.ndarray:
    loaded = load_checkpoint(checkpoint)
    assert loaded.preprocessing is not None
    dataset = folder_dataset(test)
    return correct_per_image(loaded.module, dataset, loaded.preprocessing)


def _bundle(model: Path, work: Path, name: str, folders: dict[str, Path], threads: int, progress: Progress,
            **fields: Any) -> Path:  # fmt: skip
    out = work / name
    config = CompileConfig(model=model, target=get_target(TARGET), out=out, precision="int8", threads=threads,
                           calib=folders["calib"], **fields)  # fmt: skip
    compile_model(config, progress)
    return out


def _p50s_in_turns(bundles: dict[str, Path], threads: int, calls: int, progress: Progress) -> dict[str, list[float]]:
    """Each bundle's batch-1 p50 at 224², all timed in turns by the one timing loop (`calls` samples each)."""
    runners = {name: BundleModel.open(path, threads=threads).runner.run for name, path in bundles.items()}
    batch = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    timings = time_runs(list(runners.values()), [batch] * len(runners), TimingProtocol(warmup=10, iterations=calls))
    for name, timing in zip(runners, timings):
        progress.note(f"{name}: p50 {timing.p50_ms:.2f} ms ({timing.n} calls, in turns)")
    return {name: [timing.p50_ms] for name, timing in zip(runners, timings)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=None, help="the trained base model (default: train one)")
    parser.add_argument("--epochs", type=int, default=8, help="base training epochs")
    parser.add_argument("--train-minutes", type=float, default=None, help="with --checkpoint: how long it trained")
    parser.add_argument("--trained-as", default=None, help="with --checkpoint: how it was trained, in words")
    parser.add_argument("--recover-per-class", type=int, default=500)
    parser.add_argument("--recover-epochs", type=int, default=2)
    parser.add_argument("--budget", type=float, default=1.0, help="top-1 points the searched model may lose")
    parser.add_argument("--methods", default="all", help="'all', 'none', or comma-separated row numbers (1-based)")
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()

    progress = Progress()
    threads = resolve_threads(args.threads)
    torch.set_num_threads(threads)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        folders = _data(work, args.recover_per_class)
        train_start = time.perf_counter()
        base = args.checkpoint or _train(work, folders, args.epochs, progress)
        train_minutes = (time.perf_counter() - train_start) / 60 if args.checkpoint is None else args.train_minutes
        target = get_target(TARGET)
        meter224 = Meter(224, fp32_latency_meter(target, 224, threads, work))
        original_module = load_checkpoint(base).module
        original_macs224 = meter224.macs(original_module)
        macs_at_ratio = _macs_of_uniform(original_module, threads)

        rows = []
        methods = _methods(folders["recover"], args.recover_epochs, macs_at_ratio)
        chosen = range(1, len(methods) + 1) if args.methods == "all" else (
            [] if args.methods == "none" else [int(i) for i in args.methods.split(",")])  # fmt: skip
        for index, (name, settings) in enumerate(methods.items(), start=1):
            if index not in chosen:
                continue
            progress.note(f"method {index}/{len(methods)}: {name}")
            out = work / f"method-{index}.pt"
            begin = time.perf_counter()
            report = run_prune(PruneConfig(base, out, settings, target, val=folders["test"], threads=threads), progress)
            minutes = (time.perf_counter() - begin) / 60
            rows.append(_row(name, report, minutes, meter224.macs(load_checkpoint(out).module)))
            progress.note(f"  → {rows[-1]['final']['top1']:.2%}, drop {rows[-1]['drop_vs_original']['drop_pts']:.2f}")

        # The budget decides the ratio: the default method, decided on held-out training-split images.
        searched = work / "searched.pt"
        begin = time.perf_counter()
        search_settings = PruneSettings(recover_data=folders["recover"], recover_epochs=args.recover_epochs,
                                        distill=True)  # fmt: skip
        search_report = run_prune(
            PruneConfig(base, searched, search_settings, target, val=folders["select"], max_accuracy_drop=args.budget,
                        threads=threads), progress)  # fmt: skip
        search_minutes = (time.perf_counter() - begin) / 60
        original_test = _top1_on(base, folders["test"])
        searched_test = _top1_on(searched, folders["test"])

        # Bundles: INT8 (the guard on) at the trained size for accuracy; at 224² for latency.
        bundles = {
            "unpruned": _bundle(base, work, "unpruned-int8", folders, threads, progress, backend="openvino",
                                val=folders["test"]),
            "searched": _bundle(searched, work, "searched-int8", folders, threads, progress, val=folders["test"]),
        }  # fmt: skip
        evaluated: dict[str, dict[str, Any]] = {}
        evalset = None
        for name, bundle in bundles.items():
            model = BundleModel.open(bundle, threads=threads)
            if evalset is None:
                evalset = load_eval_set(folders["test"], model.class_names, model.preprocessing, None, progress)
            assert evalset.labels is not None
            predicted = run_batched(model.runner.run, evalset.batch.inputs, 32, progress, name).argmax(1)
            correct = predicted == evalset.labels
            evaluated[name] = {"backend": model.backend, "correct": correct}
        at224 = {
            "unpruned": _bundle(base, work, "unpruned-int8-224", folders, threads, progress, backend="openvino",
                                resize=256, crop=224, min_agreement=0.0),
            "searched": _bundle(searched, work, "searched-int8-224", folders, threads, progress,
                                backend=evaluated["searched"]["backend"], resize=256, crop=224, min_agreement=0.0),
        }  # fmt: skip
        samples = _p50s_in_turns(at224, threads, args.rounds * args.iterations, progress)

    def accuracy(correct: np.ndarray) -> dict[str, Any]:
        low, high = wilson(int(correct.sum()), len(correct))
        return {"top1": float(correct.mean()), "ci95": [low, high], "images": len(correct)}

    results = {
        "target": TARGET,
        "trained_input": 48,
        "base": {
            "checkpoint": str(base),
            "train_images": 12000,
            "epochs": args.epochs,
            "trained_as": args.trained_as or f"{args.epochs} epochs (this script)",
            "train_minutes": train_minutes,
            "test": accuracy(original_test),
        },
        "recovery": {"images": args.recover_per_class * 10 * 9 // 10, "epochs": args.recover_epochs},
        "original_macs_224": original_macs224[0],
        "methods": rows,
        "search": {
            "budget_pts": args.budget,
            "decided_on": "1,000 training-split images held out from training",
            "record": search_report["search"],
            "minutes": search_minutes,
            "macs_removed": search_report["macs_removed"],
            "test_fp32": accuracy(searched_test),
            "test_fp32_drop": PairedDifference.of(original_test, searched_test).to_dict(),
        },
        "bundles": {
            name: {
                "backend": evaluated[name]["backend"],
                "test": accuracy(evaluated[name]["correct"]),
                "drop_vs_original_fp32": PairedDifference.of(original_test, evaluated[name]["correct"]).to_dict(),
                "p50_ms_224": float(np.median(samples[name])),
                "p50_rounds_ms": samples[name],
            }
            for name in bundles
        },
        "total_minutes": (time.perf_counter() - started) / 60,
        "environment": environment(threads),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "prune_methods.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "prune_methods.md").write_text(_markdown(results))
    print((args.out / "prune_methods.md").read_text())


def _macs_of_uniform(module: torch.nn.Module, threads: int) -> float:
    """MACs at the trained input after uniform pruning at RATIO: the target the global row is pruned to."""
    import torch_pruning as tp

    model = copy.deepcopy(module).eval()
    example = torch.zeros(1, 3, 48, 48)
    pruner = tp.pruner.BasePruner(model, example, importance=tp.importance.GroupMagnitudeImportance(p=2),
                                  pruning_ratio=RATIO, ignored_layers=[model.fc], round_to=8)  # fmt: skip
    pruner.step()
    return float(tp.utils.count_ops_and_params(model, example)[0])


def _interval(record: dict[str, Any]) -> str:
    low, high = record["ci95"]
    return f"{record['top1']:.2%} ({low:.1%}–{high:.1%})"


def _drop(record: dict[str, Any]) -> str:
    low, high = record["ci95_pts"]
    return f"{record['drop_pts']:+.2f} ({low:+.2f} to {high:+.2f})"


def _markdown(results: dict[str, Any]) -> str:
    env = results["environment"]
    base = results["base"]
    trained = f"{base['train_minutes']:.0f} min" if base["train_minutes"] else "trained earlier"
    lines = [
        "# Pruning a well-trained GoogLeNet: methods at the same MACs, the ratio the budget decides, and the "
        "fastest bundle within it",
        "",
        f"{env['date']}, {env['cpu']}, {env['threads']} threads; "
        + ", ".join(f"{k} {v}" for k, v in env["libraries"].items()),
        "",
        f"Model: GoogLeNet from scratch on {base['train_images']:,} Fashion-MNIST training images, "
        f"{base['trained_as']}, at {results['trained_input']}×{results['trained_input']} ({trained}); "
        f"{_interval(base['test'])} top-1 on {base['test']['images']:,} held-out test images. Recovery: "
        f"{results['recovery']['images']:,} training images (10 % of 5,000 held back to pick the best epoch) × "
        f"the epochs in the row. MACs at 224×224 (the unpruned model: {results['original_macs_224'] / 1e9:.2f} G).",
        "",
        "## Methods at about the same MACs (uniform ratio 0.4)",
        "",
        "Top-1 on the held-out test images with 95 % Wilson intervals; drop = original − recovered, in points, "
        "paired on the same images (95 % interval: Wilson on the discordant images).",
        "",
        "| # | method | MACs removed | original | pruned, before recovery | recovered | drop vs original (pts) | "
        "recovery | minutes |",
        "|---:|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    for index, row in enumerate(results["methods"], start=1):
        lines.append(
            f"| {index} | {row['method']} | {1 - row['macs_224'] / results['original_macs_224']:.0%} | "
            f"{_interval(row['original'])} | {_interval(row['pruned'])} | {_interval(row['final'])} | "
            f"{_drop(row['drop_vs_original'])} | {row['recovery_images']:,} × {row['recovery_epochs']} | "
            f"{row['minutes']:.1f} |"
        )
    search = results["search"]
    tried = ", ".join(
        f"{t['ratio']:.0%}: {t['drop_vs_original']['drop_pts']:+.2f} pts → {t['verdict']}"
        for t in search["record"]["tried"]
    )
    lines += [
        "",
        f"## The budget decides the ratio: `edgekit prune --max-accuracy-drop {search['budget_pts']:g}`",
        "",
        f"Decided on {search['decided_on']}: tried {tried}; chose {search['record']['chosen']:.0%} "
        f"({search['macs_removed']:.0%} fewer MACs) in {search['minutes']:.1f} min. On the "
        f"{search['test_fp32']['images']:,} test images: FP32 {_interval(search['test_fp32'])}, drop "
        f"{_drop(search['test_fp32_drop'])} pts against the original.",
        "",
        "## Bundles: INT8 for x86-cpu, accuracy at the trained input, latency at 224×224 batch 1",
        "",
        "| model | backend | test top-1 | drop vs original FP32 (pts) | p50 ms (224², median of rounds) | "
        "vs unpruned OpenVINO + NNCF INT8 |",
        "|---|---|---:|---:|---:|---:|",
    ]
    peer = results["bundles"]["unpruned"]["p50_ms_224"]
    for name, bundle in results["bundles"].items():
        lines.append(
            f"| {name} | {bundle['backend']} | {_interval(bundle['test'])} | "
            f"{_drop(bundle['drop_vs_original_fp32'])} | {bundle['p50_ms_224']:.2f} | "
            f"{bundle['p50_ms_224'] / peer:.2f}× |"
        )
    lines += ["", f"Whole run: {results['total_minutes']:.0f} min. Reproduce: `.venv/bin/python "
              "benchmarks/prune_methods.py`."]  # fmt: skip
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
