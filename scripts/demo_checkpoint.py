"""Make the demo's inputs: Fashion-MNIST image folders and a GoogLeNet trained on them.

No ImageNet weights can be downloaded here, so the demo trains from scratch on a stratified subset
(at 96×96 so it fits the demo's 10-minute budget on 2 cores) and saves the checkpoint the way
edgekit's trainer does: weights with aux heads, class names, transform_input, preprocessing.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from edgekit.data.fashion_mnist import write_image_folder
from edgekit.data.preprocess import PreprocessSpec
from edgekit.model.train import TrainRecipe, train_classifier
from edgekit.progress import Progress


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("demo-out"))
    parser.add_argument("--train-per-class", type=int, default=150)
    parser.add_argument("--val-per-class", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()

    progress = Progress()
    start = time.perf_counter()
    write_image_folder(args.out / "train", "train", args.train_per_class, seed=0)
    write_image_folder(args.out / "val", "test", args.val_per_class, seed=0)
    progress.note(f"wrote {args.train_per_class}/class train and {args.val_per_class}/class val images to {args.out}")
    checkpoint = args.out / "googlenet-fashion.pt"
    train_classifier(
        args.out / "train",
        checkpoint,
        PreprocessSpec(resize=110, crop=96),
        TrainRecipe(epochs=args.epochs, batch_size=32, lr=0.05),
        progress=progress,
    )
    progress.note(f"trained {checkpoint} in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
