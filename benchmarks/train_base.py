"""The base model of the pruning and end-to-end benchmarks (issue 19's "well-trained GoogLeNet"): from
scratch on 12,000 Fashion-MNIST training images at 48×48 — 11 epochs at lr 0.05, then 4 more over the
whole network at lr 0.01 — on the same folders `prune_methods.py` writes (seed 0), so the test images stay
held out. Deterministic on one machine: it gave 85.23 % on the 3,000 test images twice (about 40-56 min here).

    .venv/bin/python benchmarks/train_base.py --work /tmp/base    # then --checkpoint /tmp/base/base15.pt
"""

from __future__ import annotations

import argparse
import runpy
import time
from pathlib import Path

from edgekit.core.progress import Progress
from edgekit.model.finetune import FinetuneConfig, run_finetune

_methods = runpy.run_path(str(Path(__file__).with_name("prune_methods.py")), run_name="imported")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="where the folders and checkpoints go")
    args = parser.parse_args()
    progress = Progress()
    started = time.perf_counter()
    folders = _methods["_data"](args.work, 1200)
    first, final = args.work / "base11.pt", args.work / "base15.pt"
    run_finetune(FinetuneConfig(data=str(folders["train"]), out=first, weights="none", epochs=11, lr=0.05,
                                resize=54, crop=48), progress)  # fmt: skip
    run_finetune(FinetuneConfig(data=str(folders["train"]), out=final, weights=str(first), epochs=4, lr=0.01,
                                body_lr_mult=1.0, resize=54, crop=48), progress)  # fmt: skip
    progress.note(f"{final}: {(time.perf_counter() - started) / 60:.0f} min")


if __name__ == "__main__":
    main()
