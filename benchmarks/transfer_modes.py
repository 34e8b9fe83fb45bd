"""Transfer-learning modes on real data: does a pretrained body help, and how much should be frozen?

Source task: GoogLeNet trained from scratch on Fashion-MNIST classes 0-4 (t-shirt, trouser,
pullover, dress, coat). Target task: classes 5-9 (sandal, shirt, sneaker, bag, ankle boot) with 50
or 500 training images per class, trained with feature-extract, hybrid (frozen up to inception4a),
finetune, and from scratch for comparison. Validation: 200 test-split images per class. Everything
runs at 64×64 so the sweep fits a 2-core machine; results go to benchmarks/results/ with the machine.

    .venv/bin/python benchmarks/transfer_modes.py [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from edgekit.core.progress import Progress
from edgekit.data.datasets import FASHION_MNIST
from edgekit.measure.environment import environment
from edgekit.model.finetune import FinetuneConfig, run_finetune

COMMON = {"data": FASHION_MNIST, "resize": 72, "crop": 64, "val_per_class": 200, "batch_size": 32, "seed": 0}
TARGET_CLASSES = (5, 6, 7, 8, 9)
RUNS = (
    ("feature-extract", {"mode": "feature-extract"}),
    ("hybrid (frozen to inception4a)", {"mode": "hybrid", "freeze_until": "inception4a"}),
    ("finetune", {"mode": "finetune"}),
    ("from scratch", {"mode": "finetune", "weights": "none"}),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--sizes", default="50,500", help="training images per class")
    args = parser.parse_args()
    progress = Progress()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "source.pt"
        pretrain = run_finetune(
            FinetuneConfig(
                out=source, weights="none", class_subset=(0, 1, 2, 3, 4), per_class=300, epochs=args.epochs, lr=0.05,
                **COMMON,
            ),
            progress,
        )  # fmt: skip
        progress.note(f"source task: val top-1 {pretrain['best_val_top1']:.1%} in {pretrain['seconds']:.0f} s")
        for per_class in (int(s) for s in args.sizes.split(",")):
            for name, options in RUNS:
                config = FinetuneConfig(
                    out=Path(tmp) / "target.pt", class_subset=TARGET_CLASSES, per_class=per_class, epochs=args.epochs,
                    lr=0.02, **{**COMMON, "weights": str(source), **options},
                )  # fmt: skip
                summary = run_finetune(config, progress)
                rows.append(
                    {
                        "per_class": per_class,
                        "run": name,
                        "val_top1": summary["best_val_top1"],
                        "seconds": summary["seconds"],
                        "frozen_blocks": len(summary["frozen"]),
                    }
                )
                progress.note(f"{per_class}/class {name}: {summary['best_val_top1']:.1%} in {summary['seconds']:.0f} s")
    results = {
        "source_task": {"classes": [0, 1, 2, 3, 4], "per_class": 300, "val_top1": pretrain["best_val_top1"]},
        "target_classes": list(TARGET_CLASSES),
        "epochs": args.epochs,
        "input": 64,
        "rows": rows,
        "environment": environment(threads=0),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "transfer_modes.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        "# Transfer-learning modes, Fashion-MNIST 0-4 → 5-9 (GoogLeNet, 64×64)",
        "",
        f"{results['environment']['date']}, {results['environment']['cpu']}; source task val top-1 "
        f"{pretrain['best_val_top1']:.1%}; {args.epochs} epochs per run; 200 val images per class.",
        "",
        "| train images/class | run | val top-1 | train time s |",
        "|---:|---|---:|---:|",
        *[f"| {r['per_class']} | {r['run']} | {r['val_top1']:.1%} | {r['seconds']:.0f} |" for r in rows],
        "",
        "Reproduce: `.venv/bin/python benchmarks/transfer_modes.py`.",
    ]
    (args.out / "transfer_modes.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
