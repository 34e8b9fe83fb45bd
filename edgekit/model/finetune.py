"""`edgekit finetune`: transfer learning for any torchvision classifier edgekit knows (`model/families.py`) on
the accelerator the user has, in one process or under torchrun (DDP), through the one training loop
(`edgekit.train`).

Recipe defaults follow common practice for fine-tuning ImageNet CNNs: SGD with momentum (or AdamW),
a cosine schedule, the new head at the base learning rate and a pretrained body at a tenth of it,
light augmentation for training only, auxiliary losses weighted as each family's paper or torchvision recipe
has them (GoogLeNet 0.3, Inception v3 0.4). Inception v3's aux head needs inputs of 299 or so: at a smaller
crop it cannot run and is switched off (said in the output).
`--batch-size` is per process, as in torchvision's reference scripts: N processes train on N× the images
per step. Each epoch ends with validation; the best checkpoint is kept at `out` and the latest full state
(optimizer, schedule and gradient scaler included) at `<out>.last.pt` for `--resume`. Only rank 0 writes,
each to a temp file renamed into place, so Ctrl-C never destroys the last good checkpoint.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from edgekit.core.errors import EdgekitError
from edgekit.core.files import writable_directory_problem
from edgekit.core.progress import QUIET, Progress
from edgekit.core.threads import resolve_threads
from edgekit.core.versions import EDGEKIT_VERSION
from edgekit.data.datasets import FASHION_MNIST, LabelledImages, fashion_mnist_dataset, folder_dataset, stratified_split
from edgekit.model import families
from edgekit.model.checkpoint import save_checkpoint
from edgekit.model.freeze import (
    active_aux_heads,
    apply_freeze,
    check_mode,
    frozen_blocks,
    parameter_groups,
    set_train_mode,
)
from edgekit.model.transfer import starting_point
from edgekit.train import accelerator as accelerators
from edgekit.train import world as worlds
from edgekit.train.augment import eval_transform, train_transform
from edgekit.train.loaders import default_workers, eval_loader, train_loader
from edgekit.train.loop import Trainer, make_scheduler
from edgekit.train.objectives import LabelLoss
from edgekit.train.settings import LR_SCHEDULES, TrainingSettings


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
    batch_size: int = 32  # per process
    arch: str | None = None  # None: recorded in --weights or inferred from them; from scratch, googlenet
    optimizer: str = "sgd"
    lr: float = 0.01
    lr_schedule: str = "cosine"
    body_lr_mult: float = 0.1
    weight_decay: float = 1e-4
    label_smoothing: float = 0.0
    augment: bool = True
    resize: int | None = None  # None: the starting checkpoint's, else 256
    crop: int | None = None  # None: the starting checkpoint's, else 224
    seed: int = 0
    resume: bool = False
    threads: int = 0
    training: TrainingSettings = dataclasses.field(default_factory=TrainingSettings)
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


def validate(config: FinetuneConfig) -> None:
    """Everything checkable without data or weights."""
    check_mode(config.mode, config.freeze_until)
    if config.arch is not None:
        families.check_arch(config.arch)
    config.training.validate()
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
    if config.lr_schedule not in LR_SCHEDULES:
        raise EdgekitError(f"--lr-schedule must be one of {', '.join(LR_SCHEDULES)}")
    if min(config.epochs, config.batch_size) < 1 or config.lr <= 0:
        raise EdgekitError("--epochs and --batch-size must be at least 1 and --lr positive")
    if config.resume and not config.last_path.is_file():
        raise EdgekitError(f"--resume: {config.last_path} does not exist; run without --resume first")
    problem = writable_directory_problem(config.out.parent, must_exist=True)
    if problem:
        raise EdgekitError(f"cannot write {config.out}: {problem}")
    if config.out.is_dir():
        raise EdgekitError(f"cannot write {config.out}: it is a directory; give a file name such as model.pt")


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


# What a resumed run may change: how long it trains (more epochs) and where (the accelerator, threads,
# workers). Anything else would silently not apply (the optimizer's saved state wins) or break the schedule.
_RESUME_MAY_CHANGE = frozenset({"epochs", "resume", "threads", "training", "trust_pickle", "fashion_root", "out"})


def _resume_state(config: FinetuneConfig, world: worlds.World) -> dict[str, Any]:
    """The state `<out>.last.pt` holds, checked to continue the run it belongs to."""
    state = torch.load(config.last_path, map_location="cpu", weights_only=True)
    ran, now = state.get("recipe", {}), config.recipe()
    changed = sorted(k for k in ran if k not in _RESUME_MAY_CHANGE and k in now and ran[k] != now[k])
    if changed:
        was = ", ".join(f"--{k.replace('_', '-')} {ran[k]}" for k in changed)
        raise EdgekitError(
            f"--resume continues the run {config.last_path} belongs to, which had {was}: give the same, or start "
            f"a new run with --weights {config.out} (only --epochs and where it trains may change)"
        )
    if config.epochs <= state["epoch"]:
        raise EdgekitError(
            f"--resume: that run has trained {state['epoch']} epoch(s) already; give --epochs more than that"
        )
    processes = state.get("training", {}).get("processes", 1)
    if processes != world.size:
        raise EdgekitError(
            f"--resume: {config.last_path} was written by a run of {processes} process(es) and this one has "
            f"{world.size}; the global batch would change mid-schedule: resume with the same torchrun "
            f"--nproc_per_node, or start a new run with --weights {config.out}"
        )
    return state


def _on_cpu(value: Any) -> Any:
    """`value` (a state dict, nested) with every tensor on the CPU in the default layout: loads anywhere."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().contiguous()
    if isinstance(value, dict):
        return {key: _on_cpu(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_on_cpu(item) for item in value)
    return value


def _restore(state: dict[str, Any], config: FinetuneConfig, trainer: Trainer, steps_per_epoch: int) -> None:
    """Model, optimizer, gradient scaler and schedule as the interrupted run left them. A run resumed with more
    (or fewer) --epochs follows the schedule of the new length from the step it reached."""
    trainer.model.load_state_dict(state["model_state_dict"])
    trainer.optimizer.load_state_dict(state["optimizer_state_dict"])
    scaler = state.get("scaler_state_dict")
    if scaler and trainer.scaler.is_enabled():  # FP16 before and now; otherwise the scaler starts afresh
        trainer.scaler.load_state_dict(scaler)
    if state.get("recipe", {}).get("epochs", config.epochs) == config.epochs:
        trainer.scheduler.load_state_dict(state["scheduler_state_dict"])
        return
    for group in trainer.optimizer.param_groups:
        group["lr"] = group["initial_lr"]
    with warnings.catch_warnings():  # "scheduler stepped before the optimizer": here that is the point
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(state["epoch"] * steps_per_epoch):
            trainer.scheduler.step()


def run_finetune(config: FinetuneConfig, progress: Progress = QUIET) -> dict[str, Any]:
    validate(config)
    world = worlds.from_environment()
    threads = config.threads or max(1, resolve_threads(0) // world.local_size)
    accelerator = accelerators.resolve(config.training, world.local_rank, threads)
    accelerators.require_cuda_for_sync_batchnorm(config.training, accelerator)
    worlds.join(world, accelerator.device)
    try:
        return _train(config, world, accelerator, threads, progress)
    finally:
        world.leave()


def _train(
    config: FinetuneConfig,
    world: worlds.World,
    accelerator: accelerators.Accelerator,
    threads: int,
    progress: Progress,
) -> dict[str, Any]:
    progress = progress if world.main else QUIET
    torch.set_num_threads(threads)
    state = _resume_state(config, world) if config.resume else None

    train_set, val_set = _datasets(config, progress)
    torch.manual_seed(config.seed)  # right before the new heads are initialised: same seed, same start
    start = starting_point(config.weights, train_set.class_names, config.trust_pickle, config.arch)
    base = start.preprocessing or families.default_preprocessing(start.arch)
    spec = base.with_overrides(resize=config.resize, crop=config.crop)
    model = start.model
    families.check_input_size(model, spec.crop, start.arch)
    frozen = frozen_blocks(config.mode, config.freeze_until, families.blocks(model), start.arch)
    heads = _aux_heads_that_run(model, families.aux_heads(start.arch), spec.crop, progress)
    apply_freeze(model, heads, frozen)
    aux_heads = active_aux_heads(heads, frozen)
    new_layers = (*families.head_prefixes(start.arch), *(f"{head.module}." for head in heads))
    groups = parameter_groups(model, new_layers, config.lr, config.body_lr_mult, start.pretrained)
    if config.optimizer == "sgd":
        optimizer = torch.optim.SGD(groups, lr=config.lr, momentum=0.9, weight_decay=config.weight_decay, nesterov=True)
    else:
        optimizer = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)

    workers = config.training.workers if config.training.workers is not None else default_workers(accelerator, world)
    train_data = train_set.with_transform(train_transform(spec, "light" if config.augment else "none"))
    classes = len(train_set.class_names)
    loader = train_loader(train_data, classes, config.batch_size, config.seed, world, accelerator, workers)
    val_loader = eval_loader(val_set.with_transform(eval_transform(spec)), world, accelerator, workers)
    scheduler = make_scheduler(optimizer, config.lr_schedule, config.epochs * len(loader))
    trainer = Trainer(
        model, LabelLoss({head.output: head.weight for head in aux_heads}, config.label_smoothing), optimizer,
        scheduler, accelerator, world, config.seed, progress, train_mode=lambda m: set_train_mode(m, heads, frozen),
        sync_batchnorm=config.training.sync_batchnorm,
    )  # fmt: skip

    first_epoch, best, history = 0, -1.0, []
    if state is not None:
        _restore(state, config, trainer, len(loader))
        first_epoch, best, history = state["epoch"], state["best_val_top1"], state["history"]
        progress.note(f"resuming after epoch {first_epoch} (best val top-1 so far {best:.2%})")

    training = {
        **accelerator.to_dict(),
        "processes": world.size,
        "process_group": torch.distributed.get_backend() if world.distributed else None,  # nccl or gloo
        "loader_workers": workers,
        "threads": threads,
    }
    progress.note(
        f"{config.mode}: {len(train_set)} train / {len(val_set)} val images, {len(train_set.class_names)} classes, "
        f"{start.description}; frozen: {', '.join(frozen) if frozen else 'nothing'}; aux heads: "
        f"{', '.join(head.module for head in aux_heads) or 'off'}"
    )
    progress.note(
        f"training on {accelerator.describe()}"
        + (f"; {world.size} torchrun process(es), batch {config.batch_size} each" if world.distributed else "")
        + f"; {workers} loader worker(s)"
    )
    if train_set.unreadable:
        progress.note(
            f"warning: skipped {len(train_set.unreadable)} unreadable file(s), e.g. {next(iter(train_set.unreadable))}"
        )
    metadata = {
        "arch": start.arch,
        "classes": list(train_set.class_names),
        "transform_input": start.transform_input,
        "preprocessing": spec.to_dict(),
        "mode": config.mode,
        "freeze_until": config.freeze_until,
        "recipe": config.recipe(),
        "training": training,
        "weights_sha256": start.sha256,
        "edgekit_version": EDGEKIT_VERSION,
    }

    def save(record: dict[str, Any], improved: bool) -> None:
        history.append(record)
        progress.note(
            f"epoch {record['epoch']}/{config.epochs}: loss {record['train_loss']:.3f}, train top-1 "
            f"{record['train_top1']:.1%}, val top-1 {record['val_top1']:.1%}, {record['images_per_s']:.1f} img/s "
            f"on {accelerator.device}{' (best, saved)' if improved else ''}"
        )
        if not world.main:
            return
        weights = {"model_state_dict": _on_cpu(model.state_dict()), **metadata, "epoch": record["epoch"],
                   "history": history}  # fmt: skip
        if improved:
            save_checkpoint({**weights, "val_top1": record["val_top1"]}, config.out)
        resume = {
            "optimizer_state_dict": _on_cpu(optimizer.state_dict()),
            "scheduler_state_dict": scheduler.state_dict(),
            "scaler_state_dict": _on_cpu(trainer.scaler.state_dict()),
            "best_val_top1": max(best, *(r["val_top1"] for r in history)),
        }
        save_checkpoint({**weights, **resume}, config.last_path)

    started = time.perf_counter()
    _, best = trainer.fit(loader, config.epochs, "epoch", lambda: trainer.evaluate(val_loader), first_epoch, best, save)
    world.barrier()
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
        "world_size": world.size,
        "rank": world.rank,
        "training": training,
        "mode": config.mode,
        "frozen": list(frozen),
        "aux_heads": [head.module for head in aux_heads],
        "arch": start.arch,
    }


def _aux_heads_that_run(
    model: torch.nn.Module, heads: tuple[families.AuxHead, ...], crop: int, progress: Progress
) -> tuple[families.AuxHead, ...]:
    """The aux heads, or none where they cannot run at this crop (Inception v3's needs 299): the model is
    then trained without them, as torchvision allows (aux_logits off)."""
    if all(crop >= head.min_crop for head in heads):
        return heads
    progress.note(f"note: the auxiliary head(s) need a crop of {max(h.min_crop for h in heads)}; training without them")
    families.switch_off_aux(model)
    return ()
