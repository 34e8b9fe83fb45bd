"""Pruning recovery that needs no labels: ratio 0.5 of the pruning benchmarks' base model, recovered six
ways on the same pruned network, each judged on the 3,000 held-out test images against the unpruned model,
paired on the same images.

(a) as before this change: distilled from the unpruned model on ~2,000 labelled images, light augmentation;
(b) the same images with strong augmentation (wider crops, colour jitter, mixup/cutmix on the teacher's
    soft labels);
(c) (b) plus ~10,000 unlabelled images of the same domain: Fashion-MNIST training images the base model
    never saw, their labels thrown away (one flat folder);
(d) (a) plus the unlabelled images (light augmentation): which of the two helps;
(e), (f): (a) and (d) recovered for 12 epochs instead of 3 (every image set kept its last epoch at 3).

Base model: `benchmarks/train_base.py` (85.23 % on these test images when it was made). The recovery epochs
are edgekit's default (3); the best epoch is picked on the 10 % of the labelled images recovery holds back.

    .venv/bin/python benchmarks/train_base.py --work /tmp/base
    .venv/bin/python benchmarks/prune_recovery.py --checkpoint /tmp/base/base15.pt [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import runpy
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from edgekit.core.progress import Progress
from edgekit.core.threads import resolve_threads
from edgekit.data.fashion_mnist import write_image_folder
from edgekit.measure.environment import environment
from edgekit.optimize.prune_config import DEFAULT_RECOVER_EPOCHS, PruneConfig, PruneSettings
from edgekit.pipeline.prune import run_prune

_methods = runpy.run_path(str(Path(__file__).with_name("prune_methods.py")), run_name="imported")
RATIO = 0.5
LABELLED_PER_CLASS = 200  # ~2,000 labelled images
UNLABELLED_PER_CLASS = 1000  # ~10,000 unlabelled ones
LONG_EPOCHS = 12  # the recovery of benchmarks/results/prune_target.md


def _unlabelled(work: Path) -> Path:
    """Training-split images past those the base model, the recovery and the selection used, in one folder."""
    by_class = write_image_folder(work / "unlabelled-by-class", "train", UNLABELLED_PER_CLASS, seed=0, skip=1400)
    flat = work / "unlabelled"
    flat.mkdir()
    for index, image in enumerate(sorted(by_class.rglob("*.png"))):
        image.rename(flat / f"scene-{index:05d}.png")
    shutil.rmtree(by_class)
    return flat


def _row(name: str, report: dict[str, Any], minutes: float) -> dict[str, Any]:
    accuracy, recovery = report["accuracy"], report["recovery"] or {}
    return {
        "recovery": name,
        "macs_removed": report["macs_removed"],
        "original": accuracy["original"],
        "pruned": accuracy["pruned"],
        "final": accuracy["final"],
        "drop_vs_original": accuracy["drop_vs_original"],
        "labelled_images": recovery.get("images", 0),
        "unlabelled_images": recovery.get("unlabelled_images", 0),
        "epochs": recovery.get("epochs", 0),
        "kept_epoch": next((r["epoch"] for r in recovery.get("history", []) if r.get("kept")), None),
        "minutes": minutes,
    }


def _markdown(env: dict[str, Any], rows: list[dict[str, Any]], minutes: float) -> str:
    original = rows[0]["original"]
    lines = [
        "# Pruning recovery without labels: ratio 0.5, recovered six ways",
        "",
        f"{env['date']}, {env['cpu']} ({', '.join(env['cpu_features'])}), {env['threads']} threads; "
        + ", ".join(f"{k} {v}" for k, v in env["libraries"].items() if k in ("torch", "torchvision", "torch-pruning")),
        "",
        f"Base model: `benchmarks/train_base.py` (GoogLeNet from scratch on 12,000 Fashion-MNIST images, 48×48), "
        f"{original['top1']:.2%} ({original['ci95'][0]:.1%}–{original['ci95'][1]:.1%}) on {original['images']:,} "
        f"held-out test images. Uniform L2 pruning at ratio {RATIO} ({rows[0]['macs_removed']:.0%} fewer MACs), "
        f"then {DEFAULT_RECOVER_EPOCHS} recovery epochs (edgekit's default) unless the row says otherwise, distilled "
        "from the unpruned model (T=4); the best epoch "
        "is picked on the 10 % of the labelled images recovery holds back (so 1,800 labelled ones train). "
        "Drop = unpruned − recovered on the test images, "
        "paired (95 % interval: Wilson on the discordant images).",
        "",
        "| recovery | labelled | unlabelled | pruned, before recovery | recovered | drop vs unpruned (pts) "
        "| kept epoch | minutes |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        final, drop = row["final"], row["drop_vs_original"]
        lines.append(
            f"| {row['recovery']} | {row['labelled_images']:,} | {row['unlabelled_images']:,} | "
            f"{row['pruned']['top1']:.2%} | {final['top1']:.2%} ({final['ci95'][0]:.1%}–{final['ci95'][1]:.1%}) | "
            f"{drop['drop_pts']:+.2f} ({drop['ci95_pts'][0]:+.2f} to {drop['ci95_pts'][1]:+.2f}) | "
            f"{row['kept_epoch']} | {row['minutes']:.1f} |"
        )
    with_unlabelled = [r for r in rows if r["unlabelled_images"]]
    best = min(with_unlabelled, key=lambda r: r["drop_vs_original"]["drop_pts"])
    drop = best["drop_vs_original"]["drop_pts"]
    lines += [
        "",
        f"Goal: with the unlabelled images, within 1 point of the unpruned model — best {best['recovery']}: "
        f"{drop:+.2f} pts, {'met' if drop <= 1 else 'not met'}.",
        "",
        f"Whole run: {minutes:.0f} min. Reproduce: see the docstring of `benchmarks/prune_recovery.py`.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True, help="benchmarks/train_base.py's base15.pt")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    progress = Progress()
    started = time.perf_counter()
    threads = resolve_threads(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        folders = _methods["_data"](work, LABELLED_PER_CLASS)
        unlabelled = _unlabelled(work)
        base = PruneSettings(ratio=RATIO, recover_data=folders["recover"], distill=True, recover_augment="light")
        both = dataclasses.replace(base, recover_unlabelled=unlabelled)
        runs = {
            "(a) labelled, light augmentation (before)": base,
            "(b) labelled, strong augmentation": dataclasses.replace(base, recover_augment="strong"),
            "(c) labelled + unlabelled, strong augmentation": dataclasses.replace(both, recover_augment="strong"),
            "(d) labelled + unlabelled, light augmentation": both,
            f"(e) = (a), {LONG_EPOCHS} epochs": dataclasses.replace(base, recover_epochs=LONG_EPOCHS),
            f"(f) = (d), {LONG_EPOCHS} epochs": dataclasses.replace(both, recover_epochs=LONG_EPOCHS),
        }
        for name, settings in runs.items():
            progress.note(f"== {name}")
            run_started = time.perf_counter()
            config = PruneConfig(model=args.checkpoint, out=work / f"{len(rows)}.pt", settings=settings,
                                 target="x86-cpu", val=folders["test"], threads=threads)  # fmt: skip
            report = run_prune(config, progress)
            rows.append(_row(name, report, (time.perf_counter() - run_started) / 60))
            progress.note(f"{name}: drop {rows[-1]['drop_vs_original']['drop_pts']:+.2f} pts")
    env = environment(threads)
    minutes = (time.perf_counter() - started) / 60
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "prune_recovery.json").write_text(
        json.dumps({"environment": env, "ratio": RATIO, "runs": rows, "minutes": minutes}, indent=2, default=str) + "\n"
    )
    (args.out / "prune_recovery.md").write_text(_markdown(env, rows, minutes))
    progress.note(f"wrote {args.out / 'prune_recovery.md'} ({minutes:.0f} min)")


if __name__ == "__main__":
    main()
