"""Issue 19's targets in one run: the default pruning (uniform L2, distilled recovery) at a ratio that removes
at least 60 % of the MACs, recovered on the whole training set, scored against the original on held-out
test images; then its INT8 bundle against OpenVINO + NNCF INT8 on the unpruned model at 224² batch 1.

1. The base model: a GoogLeNet trained from scratch on 12,000 Fashion-MNIST training images at 48×48 (give
   it with --checkpoint; benchmarks/prune_methods.py trains one). Held out: 3,000 test images (300 per
   class), never trained, recovered or calibrated on.
2. `edgekit prune --ratio R --recover-data TRAIN --recover-epochs E` with every other setting at its default
   (uniform L2 importance, one shot, distilled from the original at T=4; 10 % of the recovery images held
   back to pick the best epoch). The report's drop against the original is paired on the test images.
3. INT8 bundles for x86-cpu (the default compile: every backend built and guarded, the fastest that passes)
   at the trained input for accuracy on the test images, and at 224×224 for latency, side by side in
   round-robin rounds with the unpruned model's OpenVINO + NNCF INT8 bundle.

    .venv/bin/python benchmarks/prune_target.py --checkpoint base.pt [--ratio 0.37] [--recover-epochs 8]
"""

from __future__ import annotations

import argparse
import json
import runpy
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgekit.core.progress import Progress
from edgekit.core.threads import resolve_threads
from edgekit.measure.environment import environment
from edgekit.measure.evaluate import load_eval_set, run_batched
from edgekit.measure.stats import PairedDifference, wilson
from edgekit.model.checkpoint import load_checkpoint
from edgekit.optimize.prune import Meter
from edgekit.optimize.prune_config import PruneConfig, PruneSettings
from edgekit.pipeline.prune import fp32_latency_meter, run_prune
from edgekit.runtime.model import BundleModel
from edgekit.targets import get_target

# The same data, recipe and bundle helper as the methods table (a sibling script, not a package).
_methods = runpy.run_path(str(Path(__file__).with_name("prune_methods.py")), run_name="imported")
TARGET, _bundle, _data, _top1_on, _interval, _drop, _p50s_in_turns = (
    _methods[name] for name in ("TARGET", "_bundle", "_data", "_top1_on", "_interval", "_drop", "_p50s_in_turns")
)


PEER = "unpruned, OpenVINO + NNCF INT8"


def _accuracy(correct: np.ndarray) -> dict[str, Any]:
    low, high = wilson(int(correct.sum()), len(correct))
    return {"top1": float(correct.mean()), "ci95": [low, high], "images": len(correct)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True, help="the trained base model")
    parser.add_argument("--trained-as", default="given", help="how it was trained, in words")
    parser.add_argument("--ratio", type=float, default=0.37)
    parser.add_argument("--recover-epochs", type=int, default=8)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()

    progress = Progress()
    threads = resolve_threads(args.threads)
    torch.set_num_threads(threads)
    started = time.perf_counter()
    target = get_target(TARGET)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        folders = _data(work, 1200)  # "recover" is the whole 12,000-image training folder
        base = args.checkpoint
        meter224 = Meter(224, fp32_latency_meter(target, 224, threads, work))
        original_macs = meter224.macs(load_checkpoint(base).module)[0]

        pruned = work / "pruned.pt"
        settings = PruneSettings(ratio=args.ratio, recover_data=folders["recover"], recover_epochs=args.recover_epochs)
        begin = time.perf_counter()
        report = run_prune(PruneConfig(base, pruned, settings, target, val=folders["test"], threads=threads), progress)
        prune_minutes = (time.perf_counter() - begin) / 60
        pruned_macs = meter224.macs(load_checkpoint(pruned).module)[0]
        original_test, pruned_test = _top1_on(base, folders["test"]), _top1_on(pruned, folders["test"])

        # The default compile picks its backend at the trained input (48²); the same quantizer as the peer is
        # built too (guard off: its agreement and drop are reported as they are), since at 224² the fastest
        # backend can differ.
        bundles = {
            PEER: _bundle(base, work, "unpruned", folders, threads, progress, backend="openvino", val=folders["test"]),
            "pruned, default INT8 compile": _bundle(pruned, work, "pruned", folders, threads, progress,
                                                    val=folders["test"]),
            "pruned, OpenVINO + NNCF INT8": _bundle(pruned, work, "pruned-ov", folders, threads, progress,
                                                    backend="openvino", val=folders["test"], min_agreement=0.0),
        }  # fmt: skip
        sources = {PEER: base, "pruned, default INT8 compile": pruned, "pruned, OpenVINO + NNCF INT8": pruned}
        evaluated: dict[str, dict[str, Any]] = {}
        evalset = None
        for name, bundle in bundles.items():
            model = BundleModel.open(bundle, threads=threads)
            if evalset is None:
                evalset = load_eval_set(folders["test"], model.class_names, model.preprocessing, None, progress)
            assert evalset.labels is not None
            predicted = run_batched(model.runner.run, evalset.batch.inputs, 32, progress, name).argmax(1)
            guard = model.manifest.section("quantization").get("guard", {})
            evaluated[name] = {"backend": model.backend, "correct": predicted == evalset.labels, "guard": guard}
        at224 = {
            name: _bundle(checkpoint, work, f"{index}-224", folders, threads, progress,
                          backend=evaluated[name]["backend"], resize=256, crop=224, min_agreement=0.0)
            for index, (name, checkpoint) in enumerate(sources.items())
        }  # fmt: skip
        samples = _p50s_in_turns(at224, threads, args.rounds * args.iterations, progress)

    recovery = report["recovery"] or {}
    results = {
        "target": TARGET,
        "trained_input": 48,
        "base": {"checkpoint": str(base), "trained_as": args.trained_as, "test": _accuracy(original_test)},
        "pruning": {
            "settings": report["settings"],
            "ratio": args.ratio,
            "macs_224": [original_macs, pruned_macs],
            "macs_removed_224": 1 - pruned_macs / original_macs,
            "recovery": {"images": recovery.get("images"), "epochs": recovery.get("epochs"), "minutes": prune_minutes},
            "report_accuracy": report["accuracy"],
            "test_fp32": _accuracy(pruned_test),
            "test_fp32_drop": PairedDifference.of(original_test, pruned_test).to_dict(),
        },
        "bundles": {
            name: {
                "backend": evaluated[name]["backend"],
                "guard": evaluated[name]["guard"],
                "test": _accuracy(evaluated[name]["correct"]),
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
    (args.out / "prune_target.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "prune_target.md").write_text(_markdown(results))
    print((args.out / "prune_target.md").read_text())


def _markdown(results: dict[str, Any]) -> str:
    env, base, pruning = results["environment"], results["base"], results["pruning"]
    recovery = pruning["recovery"]
    peer = results["bundles"][PEER]["p50_ms_224"]
    lines = [
        "# Issue 19's targets: the default pruning at ≥ 60 % fewer MACs, and its INT8 bundle against OpenVINO + NNCF",
        "",
        f"{env['date']}, {env['cpu']}, {env['threads']} threads; one run, {results['total_minutes']:.0f} min. "
        + ", ".join(f"{k} {v}" for k, v in env["libraries"].items()),
        "",
        f"Model: GoogLeNet from scratch on 12,000 Fashion-MNIST training images at 48×48 ({base['trained_as']}); "
        f"{_interval(base['test'])} top-1 on {base['test']['images']:,} held-out test images.",
        "",
        "## Pruning with the defaults (uniform L2, one shot, distilled recovery T=4)",
        "",
        f"- ratio {pruning['ratio']:g}: MACs at 224×224 {pruning['macs_224'][0] / 1e9:.2f} G → "
        f"{pruning['macs_224'][1] / 1e9:.2f} G (**{pruning['macs_removed_224']:.1%} fewer**)",
        f"- recovery budget: {recovery['images']:,} training images × {recovery['epochs']} epochs, "
        f"{recovery['minutes']:.1f} min on this machine (pruning, recovery and scoring)",
        f"- FP32 on the test images: original {_interval(base['test'])}, pruned and recovered "
        f"{_interval(pruning['test_fp32'])}; **drop {_drop(pruning['test_fp32_drop'])} pts** (paired, 95 %)",
        "",
        "## INT8 bundles: accuracy at the trained input, latency at 224×224 batch 1 (median of rounds)",
        "",
        "Guard: top-1 agreement with its own FP32 model on the held-out part of the calibration images (95 % "
        "interval, images in brackets) and the guard's verdict at the 99 % floor (a pass can be short of it only "
        "inside the noise).",
        "",
        "| bundle | backend | guard | test top-1 | drop vs original FP32 (pts) | p50 ms | vs OpenVINO + NNCF INT8 "
        "unpruned |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for name, bundle in results["bundles"].items():
        guard = bundle["guard"]
        low, high = guard.get("top1_agreement_ci95", [0.0, 0.0])
        agreement = (
            f"{guard.get('top1_agreement', 0.0):.1%} ({low:.1%}–{high:.1%}; {guard.get('images', '?')}), "
            f"{guard.get('verdict', '?')}"
        )
        p50 = bundle["p50_ms_224"]
        lines.append(
            f"| {name} | {bundle['backend']} | {agreement} | {_interval(bundle['test'])} | "
            f"{_drop(bundle['drop_vs_original_fp32'])} | {p50:.2f} | {p50 / peer:.2f}× |"
        )
    lines += ["", "The last row was built with `--backend openvino --min-agreement 0`: its guard figures are reported, "
              "not enforced. Calibration: 300 training-split images, a quarter held out for the guard."]  # fmt: skip
    lines += ["", "Reproduce: `.venv/bin/python benchmarks/prune_target.py --checkpoint BASE.pt` (BASE.pt: "
              "`benchmarks/prune_methods.py`'s base model)."]  # fmt: skip
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
