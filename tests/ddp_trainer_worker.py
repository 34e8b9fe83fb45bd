"""Run by tests/test_trainer.py, alone or under torchrun: trains a small convolutional network (no BatchNorm,
no dropout: nothing that legitimately differs between one process and several) with edgekit's one training
loop on real Fashion-MNIST images, and writes the weights and the epoch records that rank 0 saw."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from edgekit.data.datasets import fashion_mnist_dataset
from edgekit.data.preprocess import PreprocessSpec
from edgekit.train import accelerator as accelerators
from edgekit.train import world as worlds
from edgekit.train.augment import eval_transform
from edgekit.train.loaders import eval_loader, train_loader
from edgekit.train.loop import Trainer, make_scheduler
from edgekit.train.objectives import LabelLoss
from edgekit.train.settings import TrainingSettings


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    world = worlds.from_environment()
    settings = TrainingSettings(accelerator="cpu", amp="off", channels_last=False, workers=0)  # FP32: exact sums
    accelerator = accelerators.resolve(settings, world.local_rank)
    worlds.join(world, accelerator.device)
    spec = PreprocessSpec(resize=36, crop=32)
    images = fashion_mnist_dataset("train", 16, (0, 1, 2), 0).with_transform(eval_transform(spec))
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.ReLU(), torch.nn.Conv2d(8, 16, 3, stride=2), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 3),
    )  # fmt: skip
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
    loader = train_loader(images, 3, args.batch_size, 0, world, accelerator, workers=0)
    scheduler = make_scheduler(optimizer, "cosine", 2 * len(loader))
    trainer = Trainer(model, LabelLoss(), optimizer, scheduler, accelerator, world)
    val = eval_loader(images, world, accelerator, workers=0)
    history, _ = trainer.fit(loader, 2, "epoch", lambda: trainer.evaluate(val))
    if world.main:
        torch.save(model.state_dict(), args.out)
        args.out.with_suffix(".json").write_text(json.dumps(history))
    world.leave()


if __name__ == "__main__":
    main()
