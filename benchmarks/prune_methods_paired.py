"""Which pruning method is better than which, beyond the noise: paired comparisons of the method checkpoints
that `benchmarks/prune_methods.py --work DIR` left in DIR, on the same held-out test images.

Accuracy only (deterministic given the checkpoints), so it may run after the benchmark. Each method is
compared with the baseline row (uniform L2, one-shot, distilled T=4, the default recovery) image by image:
the top-1 difference in points with its 95 % interval (Wilson on the discordant images). A method is
"better" or "worse" only when the interval excludes zero.

    .venv/bin/python benchmarks/prune_methods_paired.py --work DIR [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgekit.data.datasets import folder_dataset
from edgekit.measure.stats import PairedDifference
from edgekit.model.checkpoint import load_checkpoint
from edgekit.optimize.prune import correct_per_image

BASELINE = 2  # 1-based row of prune_methods.py: uniform · L2 · one-shot · distilled T=4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    results = json.loads((args.out / "prune_methods.json").read_text())
    test = folder_dataset(args.work / "test")
    correct = {}
    for index, row in enumerate(results["methods"], start=1):
        loaded = load_checkpoint(args.work / f"method-{index}.pt")
        assert loaded.preprocessing is not None
        correct[index] = correct_per_image(loaded.module, test, loaded.preprocessing)
        print(f"{row['method']}: {correct[index].mean():.2%}")
    baseline = correct[BASELINE]
    lines = [
        "",
        f"## Methods against row {BASELINE} ({results['methods'][BASELINE - 1]['method']}), paired",
        "",
        "Top-1 gained over the baseline on the same test images (points; 95 % interval, Wilson on the discordant "
        "images). Better or worse only where the interval excludes zero.",
        "",
        "| # | method | gain vs baseline (pts) | verdict |",
        "|---:|---|---:|---|",
    ]
    for index, row in enumerate(results["methods"], start=1):
        if index == BASELINE:
            continue
        difference = PairedDifference.of(baseline, correct[index])
        gain, (low, high) = -difference.drop_pts, difference.interval_pts()
        verdict = "better" if -high > 0 else "worse" if -low < 0 else "inside the noise"
        row["paired_vs_baseline"] = {**difference.to_dict(), "verdict": verdict}
        lines.append(f"| {index} | {row['method']} | {gain:+.2f} ({-high:+.2f} to {-low:+.2f}) | {verdict} |")
    (args.out / "prune_methods.json").write_text(json.dumps(results, indent=2) + "\n")
    markdown = (args.out / "prune_methods.md").read_text()
    marker = lines[1]
    if marker in markdown:
        markdown = markdown[: markdown.index(marker) - 1]
    (args.out / "prune_methods.md").write_text(markdown.rstrip("\n") + "\n" + "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
