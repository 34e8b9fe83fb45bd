"""Training throughput: edgekit's one training loop against a plain PyTorch loop, and what BF16 autocast
and channels_last do on this CPU — then BF16's effect on accuracy, paired, on the `make demo` recipe.

Throughput: GoogLeNet (aux heads on, 10 classes) at 224×224, batch 32, SGD with Nesterov momentum, the same
augmentation (random resized crop, flip, colour jitter) on Fashion-MNIST training images. The plain loop is
written as torchvision's reference classification recipe (references/classification/train.py,
train_one_epoch) does it: batch to the device, forward, loss, zero_grad, backward, step, loss.item() and
top-1 every step. Every variant draws from its own DataLoader and is timed one training step per call, in
turns (`measure.latency.time_in_turns`: blocks of calls, the first of each block not counted).

Accuracy: the demo's fine-tune (from scratch, 150 images per class, 4 epochs, lr 0.05, 96×96) run twice with
the same seed, FP32 and BF16 autocast, each checkpoint scored in FP32 on the demo's 500 test-split images;
the difference is paired on the same images (95 % interval, Wilson on the discordant ones).

    .venv/bin/python benchmarks/train_throughput.py [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision

from edgekit.core.cpu import cpu_has_native_bf16
from edgekit.core.progress import Progress
from edgekit.core.threads import resolve_threads
from edgekit.data.datasets import FASHION_MNIST, fashion_mnist_dataset
from edgekit.data.preprocess import PreprocessSpec
from edgekit.measure.decide import Budget
from edgekit.measure.environment import environment
from edgekit.measure.latency import TimingProtocol, time_in_turns
from edgekit.measure.stats import PairedDifference, wilson
from edgekit.model.checkpoint import load_checkpoint
from edgekit.model.families import aux_heads
from edgekit.model.finetune import FinetuneConfig, run_finetune
from edgekit.optimize.prune import correct_per_image
from edgekit.train import accelerator as accelerators
from edgekit.train.augment import train_transform
from edgekit.train.loaders import default_workers, train_loader
from edgekit.train.loop import Trainer, make_scheduler
from edgekit.train.objectives import LabelLoss
from edgekit.train.settings import TrainingSettings
from edgekit.train.world import ONE_PROCESS

AUX_LOSS_WEIGHT = aux_heads("googlenet")[0].weight  # GoogLeNet's, for the plain loop

BATCH, CROP = 32, 224
PROTOCOL = TimingProtocol(warmup=3, iterations=30, block=6, settle=1)
RESAMPLES = 2000  # bootstrap resamples for the interval of each speed ratio
DEMO = {
    "data": FASHION_MNIST,
    "per_class": 150,
    "val_per_class": 30,
    "weights": "none",
    "epochs": 4,
    "lr": 0.05,
    "resize": 110,
    "crop": 96,
}  # fmt: skip  (the Makefile's demo target)


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=True, num_classes=10)


def _sgd(model: torch.nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4, nesterov=True)


def _forever(loader: torch.utils.data.DataLoader) -> Iterator[Any]:
    for epoch in itertools.count():
        if isinstance(loader.sampler, torch.utils.data.DistributedSampler):
            loader.sampler.set_epoch(epoch)
        yield from loader


def reference_step(dataset: Any, workers: int) -> Callable[[], None]:
    """torchvision's reference recipe's train_one_epoch, one iteration per call."""
    model, criterion = _model(), torch.nn.CrossEntropyLoss()
    optimizer = _sgd(model)
    loader = torch.utils.data.DataLoader(dataset, batch_size=BATCH, shuffle=True, num_workers=workers,
                                         pin_memory=False, drop_last=True, persistent_workers=workers > 0)  # fmt: skip
    batches = _forever(loader)
    model.train()

    def step() -> None:
        image, target = next(batches)
        output = model(image)
        loss = criterion(output.logits, target) + AUX_LOSS_WEIGHT * (
            criterion(output.aux_logits1, target) + criterion(output.aux_logits2, target)
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        loss.item(), (output.logits.argmax(1) == target).float().mean().item()  # its metric_logger.update

    return step


def edgekit_step(dataset: Any, amp: str, channels_last: bool) -> Callable[[], None]:
    """edgekit's trainer, one step per call, reading its running figures back every 10 steps as an epoch does."""
    settings = TrainingSettings(accelerator="cpu", amp=amp, channels_last=channels_last)
    accelerator = accelerators.resolve(settings, None, torch.get_num_threads())
    model = _model()
    optimizer = _sgd(model)
    loader = train_loader(dataset, 10, BATCH, 0, ONE_PROCESS, accelerator)
    objective = LabelLoss({head.output: head.weight for head in aux_heads("googlenet")})
    trainer = Trainer(model, objective, optimizer, make_scheduler(optimizer, "constant", 1), accelerator)
    batches, count = _forever(loader), itertools.count(1)
    model.train()

    def step() -> None:
        trainer.step(*next(batches))
        if next(count) % 10 == 0:
            trainer.sums.tolist()

    return step


def throughput(progress: Progress) -> list[dict[str, Any]]:
    spec = PreprocessSpec(resize=256, crop=CROP)
    dataset = fashion_mnist_dataset("train", 100, tuple(range(10)), 0).with_transform(train_transform(spec, "light"))
    cores = resolve_threads(0)
    cpu = accelerators.resolve(TrainingSettings(accelerator="cpu"), None, cores)
    default = (cpu.amp, cpu.channels_last)  # what `--accelerator cpu` resolves to on this machine
    edgekit = [(amp, layout) for amp in ("off", "bf16") for layout in (False, True)]

    def name(amp: str, layout: bool) -> str:
        words = f"edgekit trainer, {'FP32' if amp == 'off' else 'BF16 autocast'}" + (
            ", channels_last" if layout else ""
        )
        return words + (" (the default here)" if (amp, layout) == default else "")

    variants: list[tuple[str, Callable[[], None], dict[str, Any]]] = [
        ("plain PyTorch loop (reference recipe), FP32, 0 workers", reference_step(dataset, 0), {}),
        (f"plain PyTorch loop (reference recipe), FP32, {cores} workers", reference_step(dataset, cores), {}),
        *(
            (name(amp, layout), edgekit_step(dataset, amp, layout), {"amp": amp, "channels_last": layout})
            for amp, layout in edgekit
        ),
    ]
    progress.note(f"timing {len(variants)} training loops in turns on {cpu.name}, {default_workers(cpu, ONE_PROCESS)} "
                  "edgekit loader workers")  # fmt: skip
    timings = time_in_turns([call for _, call, _ in variants], PROTOCOL, [BATCH] * len(variants), progress=progress,
                            desc="training steps")  # fmt: skip
    baseline = timings[0].images_per_s
    rng = np.random.default_rng(0)

    def ratio_interval(samples: tuple[float, ...]) -> list[float]:
        """95 % bootstrap interval of (plain loop's median step) / (this one's): resampling both."""
        base, own = np.asarray(timings[0].samples_ms), np.asarray(samples)
        ratios = [
            np.median(rng.choice(base, base.size)) / np.median(rng.choice(own, own.size)) for _ in range(RESAMPLES)
        ]
        return [float(np.percentile(ratios, 2.5)), float(np.percentile(ratios, 97.5))]

    return [
        {
            "loop": name,
            **how,
            "images_per_s": t.images_per_s,
            "step_p50_ms": t.p50_ms,
            "steps": t.n,
            "vs_plain_loop": t.images_per_s / baseline,
            "vs_plain_loop_ci95": ratio_interval(t.samples_ms),
        }
        for (name, _, how), t in zip(variants, timings)
    ]


def bf16_accuracy(work: Path, progress: Progress) -> dict[str, Any]:
    """Both ways trained with channels_last off (its effect is layout only); scored on the demo's 500 images
    and, for a tighter interval, on the whole Fashion-MNIST test split (10,000, the 500 among them)."""
    sets = {"demo": fashion_mnist_dataset("test", 50, tuple(range(10)), 0),  # the demo's val folder
            "test_split": fashion_mnist_dataset("test", 1000, tuple(range(10)), 0)}  # fmt: skip
    runs: dict[str, Any] = {}
    for amp in ("off", "bf16"):
        out = work / f"demo-{amp}.pt"
        started = time.perf_counter()
        settings = TrainingSettings(accelerator="cpu", amp=amp, channels_last=False)
        summary = run_finetune(FinetuneConfig(out=out, training=settings, **DEMO), progress)
        minutes = (time.perf_counter() - started) / 60
        loaded = load_checkpoint(out)
        assert loaded.preprocessing is not None
        runs[amp] = {"correct": {name: correct_per_image(loaded.module, images, loaded.preprocessing)
                                 for name, images in sets.items()}, "minutes": minutes,
                     "images_per_s": float(np.mean([h["images_per_s"] for h in summary["history"]]))}  # fmt: skip
    result: dict[str, Any] = {}
    for name, images in sets.items():
        paired = PairedDifference.of(runs["off"]["correct"][name], runs["bf16"]["correct"][name])
        low, high = paired.interval_pts()
        loss = Budget(0.0).judge(paired)  # the one rule, with no loss allowed: "fail" is a significant loss
        result[name] = {"images": len(images), "drop_pts": paired.drop_pts, "interval_pts": [low, high],
                        "paired": paired.to_dict(), "significant_loss": loss.verdict == "fail"}  # fmt: skip
        for amp, run in runs.items():
            hits = int(run["correct"][name].sum())
            result[name][amp] = {"top1": hits / len(images), "ci95": list(wilson(hits, len(images)))}
    for amp, run in runs.items():
        result[amp] = {"minutes": run["minutes"], "train_images_per_s": run["images_per_s"]}
    return result


def _markdown(env: dict[str, Any], rows: list[dict[str, Any]], accuracy: dict[str, Any], minutes: float) -> str:
    def row(amp: str, layout: bool) -> dict[str, Any]:
        return next(r for r in rows if r.get("amp") == amp and r.get("channels_last") == layout)

    fp32, fp32_nhwc, fastest = row("off", False), row("off", True), max(rows, key=lambda r: r["images_per_s"])
    lines = [
        "# Training throughput: edgekit's trainer against a plain PyTorch loop, BF16 and channels_last on this CPU",
        "",
        f"{env['date']}, {env['cpu']} ({', '.join(env['cpu_features'])}), {env['threads']} threads; "
        + ", ".join(f"{k} {v}" for k, v in env["libraries"].items() if k in ("torch", "torchvision")),
        "",
        f"GoogLeNet (aux heads) at {CROP}×{CROP}, batch {BATCH}, SGD, the same augmentation; one training step per "
        f"call, timed in turns ({PROTOCOL.iterations}+ steps each after {PROTOCOL.warmup} warm-up). "
        "Reproduce: `.venv/bin/python benchmarks/train_throughput.py`.",
        "",
        "| loop | images/s | step p50 (ms) | steps | vs plain loop, 0 workers (95 % bootstrap interval) |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| {r['loop']} | {r['images_per_s']:.2f} | {r['step_p50_ms']:.0f} | {r['steps']} | "
            f"{r['vs_plain_loop']:.3f}× ({r['vs_plain_loop_ci95'][0]:.3f}–{r['vs_plain_loop_ci95'][1]:.3f}) |"
            for r in rows
        ),
        "",
        f"edgekit's trainer in FP32 against the plain loop: **{fp32_nhwc['vs_plain_loop']:.3f}×** in its default "
        f"layout (channels_last), **{fp32['vs_plain_loop']:.3f}×** "
        f"({fp32['vs_plain_loop_ci95'][0]:.3f}–{fp32['vs_plain_loop_ci95'][1]:.3f}) in the plain loop's layout: the "
        f"loop itself costs nothing measurable, the layout is the gain. Fastest: {fastest['loop']}, "
        f"**{fastest['images_per_s'] / fp32['images_per_s']:.2f}×** edgekit FP32.",
        "",
        "## BF16 autocast's effect on accuracy (the `make demo` fine-tune, same seed, both ways)",
        "",
        f"FP32: {accuracy['off']['minutes']:.1f} min, {accuracy['off']['train_images_per_s']:.1f} images/s; BF16 "
        f"autocast: {accuracy['bf16']['minutes']:.1f} min, {accuracy['bf16']['train_images_per_s']:.1f} images/s "
        "(96×96, channels_last off both ways). Each checkpoint scored in FP32; 95 % Wilson intervals; the drop is "
        "paired on the same images (Wilson on the discordant ones).",
        "",
        "| images | FP32 top-1 | BF16 top-1 | drop FP32 → BF16 (pts) | verdict |",
        "|---|---:|---:|---:|---|",
    ]
    for name, words in (("demo", "the demo's val images"), ("test_split", "the whole test split")):
        r = accuracy[name]
        lines.append(
            f"| {words} ({r['images']:,}) | {r['off']['top1']:.2%} "
            f"({r['off']['ci95'][0]:.1%}–{r['off']['ci95'][1]:.1%}) "
            f"| {r['bf16']['top1']:.2%} ({r['bf16']['ci95'][0]:.1%}–{r['bf16']['ci95'][1]:.1%}) | {r['drop_pts']:+.2f} "
            f"({r['interval_pts'][0]:+.2f} to {r['interval_pts'][1]:+.2f}) | "
            + ("significant loss |" if r["significant_loss"] else "no significant loss |")
        )
    lines += ["", f"Whole run: {minutes:.0f} min.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--skip-accuracy", action="store_true", help="throughput only")
    parser.add_argument("--render", action="store_true", help="rewrite the .md from the .json of the last run")
    args = parser.parse_args()
    if args.render:
        record = json.loads((args.out / "train_throughput.json").read_text())
        markdown = _markdown(record["environment"], record["throughput"], record["bf16_accuracy"], record["minutes"])
        (args.out / "train_throughput.md").write_text(markdown)
        return
    progress = Progress()
    started = time.perf_counter()
    threads = resolve_threads(0)
    torch.set_num_threads(threads)
    rows = throughput(progress)
    for row in rows:
        progress.note(f"{row['loop']}: {row['images_per_s']:.2f} img/s ({row['vs_plain_loop']:.3f}×)")
    accuracy: dict[str, Any] = {}
    if not args.skip_accuracy:
        with tempfile.TemporaryDirectory() as work:
            accuracy = bf16_accuracy(Path(work), progress)
    env = environment(threads)
    env["native_bf16"] = cpu_has_native_bf16()
    minutes = (time.perf_counter() - started) / 60
    record = {"environment": env, "throughput": rows, "bf16_accuracy": accuracy, "minutes": minutes}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "train_throughput.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    if accuracy:
        (args.out / "train_throughput.md").write_text(_markdown(env, rows, accuracy, minutes))
    progress.note(f"wrote {args.out / 'train_throughput.json'} ({minutes:.0f} min)")


if __name__ == "__main__":
    main()
