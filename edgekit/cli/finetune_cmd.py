"""`edgekit finetune`."""

from __future__ import annotations

from pathlib import Path

import click

from edgekit.cli.options import (
    arch_option,
    crop_option,
    json_option,
    parse_int_list,
    print_json,
    quiet_option,
    resize_option,
    threads_option,
    training_options,
    training_settings,
    trust_pickle_option,
)
from edgekit.train.settings import LR_SCHEDULES


def _refuse_device(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None:
        raise click.BadParameter(
            f"in edgekit --device names a board over SSH; to train on {value!r} give --accelerator {value}",
            param_hint="--device",
        )


@click.command()
@click.option("--data", required=True, help="Training image folder (one sub-directory per class), or 'fashion-mnist'.")
@click.option(
    "--weights", required=True, help="ImageNet weights file, an edgekit checkpoint, or 'none' (from scratch)."
)
@click.option(
    "--mode",
    type=click.Choice(["feature-extract", "finetune", "hybrid"]),
    default="finetune",
    show_default=True,
    help="What trains: feature-extract the new head only; finetune everything (the body at --body-lr-mult); "
    "hybrid the blocks after --freeze-until.",
)
@click.option(
    "--freeze-until", default=None, help="hybrid: freeze the stem and blocks up to this one (e.g. inception4a)."
)
@click.option(
    "--out", "-o", type=click.Path(path_type=Path, dir_okay=False), required=True, help="Best checkpoint file."
)
@click.option("--val", type=click.Path(path_type=Path, file_okay=False), help="Validation folder (default: a split).")
@click.option(
    "--val-split", type=float, default=0.1, show_default=True, help="Stratified fraction held out when no --val."
)
@click.option(
    "--epochs", type=click.IntRange(min=1), default=5, show_default=True, help="Passes over the training images."
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=32,
    show_default=True,
    help="Images per step per process (under torchrun the global batch is N× this).",
)
@click.option(
    "--optimizer",
    type=click.Choice(["sgd", "adamw"]),
    default="sgd",
    show_default=True,
    help="sgd: Nesterov momentum 0.9 (the usual choice for fine-tuning CNNs); adamw: decoupled weight decay.",
)
@click.option("--lr", type=float, default=0.01, show_default=True, help="Learning rate of the new head.")
@click.option(
    "--lr-schedule",
    type=click.Choice(LR_SCHEDULES),
    default="cosine",
    show_default=True,
    help="Learning-rate schedule, stepped per batch.",
)
@click.option("--body-lr-mult", type=float, default=0.1, show_default=True, help="Pretrained body LR = lr × this.")
@click.option("--weight-decay", type=float, default=1e-4, show_default=True, help="L2 penalty on the weights.")
@click.option(
    "--label-smoothing", type=float, default=0.0, show_default=True, help="Share of each label spread over the others."
)
@click.option("--augment/--no-augment", default=True, show_default=True, help="Light augmentation of training images.")
@resize_option
@crop_option
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed of the split, the shuffling and the new head."
)
@click.option("--resume", is_flag=True, help="Continue from <out>.last.pt where the previous run stopped.")
@click.option(
    "--per-class", type=click.IntRange(min=1), default=500, show_default=True, help="fashion-mnist: train images/class."
)
@click.option(
    "--val-per-class",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="fashion-mnist: val images/class.",
)
@click.option("--class-subset", default=None, help="fashion-mnist: comma-separated class indices, e.g. 0,1,2.")
@click.option(
    "--fashion-mnist-root",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="fashion-mnist: where its idx files are (default: Debian's /usr/share/datasets/fashion-mnist).",
)
@training_options
@click.option(
    "--sync-batchnorm", is_flag=True, help="Under torchrun on GPUs: BatchNorm statistics over the global batch."
)
@click.option("--device", hidden=True, expose_value=False, callback=_refuse_device)
@threads_option
@arch_option
@trust_pickle_option
@quiet_option
@json_option
def finetune(
    data: str,
    weights: str,
    mode: str,
    freeze_until: str | None,
    out: Path,
    val: Path | None,
    val_split: float,
    epochs: int,
    batch_size: int,
    optimizer: str,
    lr: float,
    lr_schedule: str,
    body_lr_mult: float,
    weight_decay: float,
    label_smoothing: float,
    augment: bool,
    resize: int | None,
    crop: int | None,
    seed: int,
    resume: bool,
    per_class: int,
    val_per_class: int,
    class_subset: str | None,
    fashion_mnist_root: Path | None,
    sync_batchnorm: bool,
    threads: int | None,
    arch: str | None,
    trust_pickle: bool,
    quiet: bool,
    as_json: bool,
    **training: object,
) -> None:
    """Transfer-learn a torchvision classifier on your classes; writes a checkpoint `edgekit compile` reads.

    The model is --weights' architecture (recorded, or found from its layers), or --arch (from scratch:
    googlenet unless given).

    Trains on the GPU when PyTorch sees one (--accelerator). On several GPUs run the same command under
    torchrun: `torchrun --nproc_per_node N --no-python edgekit finetune ...` (DistributedDataParallel, one GPU
    per process, rank 0 writes); on several machines add torchrun's --nnodes and --rdzv-endpoint.
    """
    from edgekit.core.install import require_workstation

    require_workstation("finetune")
    from edgekit.core.progress import Progress
    from edgekit.model.finetune import FinetuneConfig, run_finetune

    subset = parse_int_list(class_subset, "--class-subset", minimum=0) if class_subset else None
    if subset is not None and (len(set(subset)) != len(subset) or max(subset) > 9 or len(subset) < 2):
        raise click.BadParameter(
            "needs at least two distinct Fashion-MNIST class indices 0-9", param_hint="--class-subset"
        )
    config = FinetuneConfig(
        data=data,
        out=out,
        weights=weights,
        mode=mode,
        freeze_until=freeze_until,
        val=val,
        val_split=val_split,
        epochs=epochs,
        batch_size=batch_size,
        optimizer=optimizer,
        lr=lr,
        lr_schedule=lr_schedule,
        body_lr_mult=body_lr_mult,
        weight_decay=weight_decay,
        label_smoothing=label_smoothing,
        augment=augment,
        resize=resize,
        crop=crop,
        seed=seed,
        resume=resume,
        threads=threads or 0,
        training=training_settings(training, sync_batchnorm),
        per_class=per_class,
        val_per_class=val_per_class,
        class_subset=subset,
        fashion_root=fashion_mnist_root,
        trust_pickle=trust_pickle,
        arch=arch,
    )
    summary = run_finetune(config, Progress(enabled=not quiet))
    if summary["rank"] != 0:  # under torchrun only rank 0 reports
        return
    if as_json:
        print_json(summary)
        return
    click.echo(f"checkpoint: {summary['checkpoint']} (best val top-1 {summary['best_val_top1']:.2%})")
    click.echo(f"resume state: {summary['last']}")
