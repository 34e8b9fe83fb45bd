"""Write a stratified Fashion-MNIST subset as an image folder (one sub-directory per class).

The demo validates and benchmarks on these PNG files exactly as a user's own folder would be read.

    python scripts/fashion_mnist_folder.py OUT_DIR [--split test] [--per-class 50]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edgekit.data.fashion_mnist import write_image_folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--split", choices=["train", "test"], default="test")
    parser.add_argument("--per-class", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    write_image_folder(args.out, args.split, args.per_class, seed=args.seed)
    print(f"wrote {args.per_class} {args.split} images per class to {args.out}")


if __name__ == "__main__":
    main()
