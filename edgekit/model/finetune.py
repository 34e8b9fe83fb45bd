"""`edgekit finetune`: transfer learning for GoogLeNet, single process or under torchrun (DDP).

Recipe defaults follow common practice for fine-tuning ImageNet CNNs: SGD with momentum (or AdamW),
a cosine schedule, the new head at the base learning rate and a pretrained body at a tenth of it,
light augmentation for training only, auxiliary losses weighted 0.3 as in the GoogLeNet paper.
Each epoch ends with validation; the best checkpoint is kept at `out` and the latest full state
(optimizer included) at `<out>.last.pt` for `--resume`. Both are written to a temp file and renamed,
so Ctrl-C never destroys the last good checkpoint.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F

from edgekit.core.errors import EdgekitError
from edgekit.core.files import writable_directory_problem
from edgekit.core.progress import QUIET, Progress
from edgekit.core.threads import resolve_threads
from edgekit.core.versions import EDGEKIT_VERSION
from edgekit.data.datasets import FASHION_MNIST, LabelledImages, fashion_mnist_dataset, folder_dataset, stratified_split
from edgekit.data.preprocess import PreprocessSpec
from edgekit.model.checkpoint import save_checkpoint
from edgekit.model.freeze import active_aux_heads, apply_freeze, frozen_blocks, parameter_groups, set_train_mode
from edgekit.model.transfer import starting_point

AUX_LOSS_WEIGHT = 0.3  # GoogLeNet paper: each auxiliary loss is added with weight 0.3


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    data: str  # image folder, or "fashion-mnist"
    out: Path
    weights: str = "none"  # a weights/checkpoint file, or "none"
    mode: str = "finetune"
    freeze_until: str | None = None
    val: Path | None = None  # else a stratified split of the training data
    val_split: float = 0.1
    epochs: int = 5
    batch_size: int = 32
    optimizer: str = "sgd"
    lr: float = 0.01
    body_lr_mult: float = 0.1
    weight_decay: float = 1e-4
    label_smoothing: float = 0.0
    augment: bool = True
    resize: int | None = None  # None: the starting checkpoint's, else 256
    crop: int | None = None  # None: the starting checkpoint's, else 224
    seed: int = 0
    resume: bool = False
    threads: int = 0
    per_class: int = 500  # fashion-mnist: training images per class
    val_per_class: int = 100  # fashion-mnist: validation images per class (from its test split)
    class_subset: tuple[int, ...] | None = None  # fashion-mnist: which of its 10 classes
    fashion_root: Path | None = None
    trust_pickle: bool = False

    @property
    def last_path(self) -> Path:
        return self.out.with_name(self.out.stem + ".last" + (self.out.suffix or ".pt"))

    def recipe(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(self).items()}


def validate(config: FinetuneConfig) -> tuple[str, ...]:
    """Everything checkable without data or weights; returns the frozen blocks."""
    frozen = frozen_blocks(config.mode, config.freeze_until)
    if config.data != FASHION_MNIST and not Path(config.data).is_dir():
        raise EdgekitError(f"--data {config.data} is not a directory (or use --data {FASHION_MNIST})")
    if config.weights != "none" and not Path(config.weights).is_file():
        raise EdgekitError(f"--weights {config.weights} does not exist (pass a file, or 'none' to train from scratch)")
    if config.mode != "finetune" and config.weights == "none":
        raise EdgekitError(f"--mode {config.mode} freezes layers, which needs pretrained --weights, not 'none'")
    if config.val is not None and not config.val.is_dir():
        raise EdgekitError(f"--val {config.val} is not a directory")
    if not 0 < config.val_split <= 0.5:
        raise EdgekitError("--val-split must be in (0, 0.5]")
    if config.optimizer not in ("sgd", "adamw"):
        raise EdgekitError("--optimizer must be sgd or adamw")
    if min(config.epochs, config.batch_size) < 1 or config.lr <= 0:
        raise EdgekitError("--epochs and --batch-size must be at least 1 and --lr positive")
    if config.resume and not config.last_path.is_file():
        raise EdgekitError(f"--resume: {config.last_path} does not exist; run without --resume first")
    problem = writable_directory_problem(config.out.parent, must_exist=True)
    if problem:
        raise EdgekitError(f"cannot write {config.out}: {problem}")
    if config.out.is_dir():
        raise EdgekitError(f"cannot write {config.out}: it is a directory; give a file name such as model.pt")
    return frozen


def _datasets(config: FinetuneConfig, progress: Progress) -> tuple[LabelledImages, LabelledImages]:
    if config.data == FASHION_MNIST:
        classes = config.class_subset or tuple(range(10))
        train = fashion_mnist_dataset("train", config.per_class, classes, config.seed, config.fashion_root)
        val = fashion_mnist_dataset("test", config.val_per_class, classes, config.seed, config.fashion_root)
        return train, val
    train = folder_dataset(Path(config.data), progress)
    if config.val is None:
        return stratified_split(train, config.val_split, config.seed)
    val = folder_dataset(config.val, progress)
    if val.class_names != train.class_names:
        only_train = sorted(set(train.class_names) - set(val.class_names))
        only_val = sorted(set(val.class_names) - set(train.class_names))
        raise EdgekitError(
            f"train and validation classes differ (only in train: {', '.join(only_train) or '-'}; "
            f"only in val: {', '.join(only_val) or '-'})"
        )
    return train, val


def train_eval_transforms(spec: PreprocessSpec, augment: bool) -> tuple[Any, Any]:
    from torchvision import transforms

    normalize = [transforms.ToTensor(), transforms.Normalize(spec.mean, spec.std)]
    evaluate = transforms.Compose([transforms.Resize(spec.resize), transforms.CenterCrop(spec.crop), *normalize])
    if not augment:
        return evaluate, evaluate
    train = transforms.Compose(
        [
            transforms.RandomResizedCrop(spec.crop, scale=(0.6, 1.0)),
            transforms.RandomHorizontalFlip(),
            transforms.ColorJitter(brightness=0.2, contrast=0.2),
            *normalize,
        ]
    )
    return train, evaluate


def _distributed() -> tuple[int, int]:
    """(rank, world size); joins the process group when started by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (torch.distributed.get_rank() if world > 1 else 0), world


def _loss(outputs: Any, labels: torch.Tensor, aux_heads: tuple[str, ...], smoothing: float) -> tuple[torch.Tensor, Any]:
    if isinstance(outputs, torch.Tensor):  # eval mode, or no aux heads
        return F.cross_entropy(outputs, labels, label_smoothing=smoothing), outputs
    loss = F.cross_entropy(outputs.logits, labels, label_smoothing=smoothing)
    for head, aux in (("aux1", outputs.aux_logits1), ("aux2", outputs.aux_logits2)):
        if head in aux_heads and aux is not None:
            loss = loss + AUX_LOSS_WEIGHT * F.cross_entropy(aux, labels, label_smoothing=smoothing)
    return loss, outputs.logits


def evaluate_top1(model: torch.nn.Module, loader: Any, world: int = 1) -> float:
    model.eval()
    correct = torch.zeros(2, dtype=torch.float64)
    with torch.no_grad():
        for images, labels in loader:
            correct += torch.tensor([float((model(images).argmax(1) == labels).sum()), float(len(labels))])
    if world > 1:
        torch.distributed.all_reduce(correct)
    return float(correct[0] / max(correct[1], 1.0))


def run_finetune(config: FinetuneConfig, progress: Progress = QUIET) -> dict[str, Any]:
    frozen = validate(config)
    rank, world = _distributed()
    progress = progress if rank == 0 else QUIET
    torch.set_num_threads(config.threads or max(1, resolve_threads(0) // world))

    train_set, val_set = _datasets(config, progress)
    torch.manual_seed(config.seed)  # right before the new heads are initialised: same seed, same start
    start = starting_point(config.weights, train_set.class_names, config.trust_pickle)
    base = start.preprocessing or PreprocessSpec()
    spec = base.with_overrides(resize=config.resize, crop=config.crop)
    model = start.model
    apply_freeze(model, frozen)
    aux_heads = active_aux_heads(frozen)
    groups = parameter_groups(model, config.lr, config.body_lr_mult, start.pretrained)
    if config.optimizer == "sgd":
        optimizer = torch.optim.SGD(groups, lr=config.lr, momentum=0.9, weight_decay=config.weight_decay, nesterov=True)
    else:
        optimizer = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)

    train_tf, eval_tf = train_eval_transforms(spec, config.augment)
    train_data, val_data = train_set.with_transform(train_tf), val_set.with_transform(eval_tf)
    sampler = torch.utils.data.DistributedSampler(train_data, seed=config.seed) if world > 1 else None
    val_sampler = torch.utils.data.DistributedSampler(val_data, shuffle=False) if world > 1 else None
    loader = torch.utils.data.DataLoader(
        train_data,
        batch_size=config.batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        generator=torch.Generator().manual_seed(config.seed),
        drop_last=len(train_data) > config.batch_size,
    )
    val_loader = torch.utils.data.DataLoader(val_data, batch_size=64, sampler=val_sampler)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs * len(loader))

    first_epoch, best, history = 0, -1.0, []
    if config.resume:
        state = torch.load(config.last_path, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model_state_dict"])
        optimizer.load_state_dict(state["optimizer_state_dict"])
        scheduler.load_state_dict(state["scheduler_state_dict"])
        first_epoch, best, history = state["epoch"], state["best_val_top1"], state["history"]
        progress.note(f"resuming after epoch {first_epoch} (best val top-1 so far {best:.2%})")
    trained_model = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model

    progress.note(
        f"{config.mode}: {len(train_set)} train / {len(val_set)} val images, {len(train_set.class_names)} classes, "
        f"{start.description}; frozen: {', '.join(frozen) if frozen else 'nothing'}; aux heads: "
        f"{', '.join(aux_heads) or 'off'}" + (f"; {world} processes" if world > 1 else "")
    )
    if train_set.unreadable:
        progress.note(
            f"warning: skipped {len(train_set.unreadable)} unreadable file(s), e.g. {next(iter(train_set.unreadable))}"
        )
    metadata = {
        "classes": list(train_set.class_names),
        "transform_input": start.transform_input,
        "preprocessing": spec.to_dict(),
        "mode": config.mode,
        "freeze_until": config.freeze_until,
        "recipe": config.recipe(),
        "weights_sha256": start.sha256,
        "edgekit_version": EDGEKIT_VERSION,
    }
    started = time.perf_counter()
    for epoch in range(first_epoch, config.epochs):
        if sampler is not None:
            sampler.set_epoch(epoch)
        set_train_mode(model, frozen)
        bar = progress.counter(len(loader), f"epoch {epoch + 1}/{config.epochs}", "batch")
        total_loss = correct = seen = 0.0
        for images, labels in loader:
            loss, logits = _loss(trained_model(images), labels, aux_heads, config.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total_loss += float(loss.detach()) * len(labels)
            correct += float((logits.argmax(1) == labels).sum())
            seen += len(labels)
            bar.update(1, loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.1%}")
        bar.close()
        val_top1 = evaluate_top1(model, val_loader, world)
        record = {
            "epoch": epoch + 1,
            "train_loss": total_loss / seen,
            "train_top1": correct / seen,
            "val_top1": val_top1,
        }
        history.append(record)
        improved = val_top1 > best
        best = max(best, val_top1)
        progress.note(
            f"epoch {epoch + 1}/{config.epochs}: loss {record['train_loss']:.3f}, "
            f"train top-1 {record['train_top1']:.1%}, val top-1 {val_top1:.1%}{' (best, saved)' if improved else ''}"
        )
        if rank == 0:
            weights = {"model_state_dict": model.state_dict(), **metadata, "epoch": epoch + 1, "history": history}
            if improved:
                save_checkpoint({**weights, "val_top1": val_top1}, config.out)
            save_checkpoint(
                {
                    **weights,
                    "optimizer_state_dict": optimizer.state_dict(),
                    "scheduler_state_dict": scheduler.state_dict(),
                    "best_val_top1": best,
                },
                config.last_path,
            )
    if world > 1:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return {
        "checkpoint": str(config.out),
        "last": str(config.last_path),
        "best_val_top1": best,
        "epochs": config.epochs,
        "history": history,
        "train_images": len(train_set),
        "val_images": len(val_set),
        "unreadable": train_set.unreadable,
        "seconds": time.perf_counter() - started,
        "world_size": world,
        "rank": rank,
        "mode": config.mode,
        "frozen": list(frozen),
        "aux_heads": list(aux_heads),
    }
