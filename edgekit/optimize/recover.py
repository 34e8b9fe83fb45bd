"""Recovery after pruning: a short training run of the pruned model through the one training loop
(`edgekit.train`), on the accelerator the user chose.

By default it is distilled from the unpruned model (`train.objectives.Distillation`), optionally also at
the outputs of the model's last three stages (FitNets). Distillation needs only images, so unlabelled photos
of the deployment scene (`--recover-unlabelled`) join the labelled ones, or replace them. The best epoch on the
held-out selection images is kept, not the last: top-1 on labelled ones, else agreement with the unpruned
model on held-out unlabelled ones.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from edgekit.core.progress import QUIET, Progress
from edgekit.data.preprocess import PreprocessSpec
from edgekit.model import families
from edgekit.optimize.prune_config import PruneSettings
from edgekit.train import accelerator as accelerators
from edgekit.train.augment import MIX, eval_transform, train_transform
from edgekit.train.loaders import eval_loader, train_loader
from edgekit.train.loop import Trainer, make_scheduler
from edgekit.train.objectives import Distillation, FeatureMatch, LabelLoss
from edgekit.train.world import ONE_PROCESS

if TYPE_CHECKING:
    from edgekit.optimize.prune import PruneData


def recover(
    student: torch.nn.Module,
    teacher: torch.nn.Module | None,
    data: PruneData,
    spec: PreprocessSpec,
    settings: PruneSettings,
    epochs: int,
    progress: Progress = QUIET,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Train `student` in place for `epochs` on `data` (a `prune.PruneData`: `train` labelled, `unlabelled`,
    `select` labelled held-out images, `select_unlabelled`); returns one record per epoch, epoch 0 being the
    model as it came in, the kept one marked `kept`, and how it ran (accelerator, how the epoch was
    chosen). The student (and teacher) end on the CPU again."""
    torch.manual_seed(settings.seed)
    accelerator = accelerators.resolve(settings.training, None, torch.get_num_threads())
    progress.note(f"recovery on {accelerator.describe()}, {settings.recover_augment} augmentation")
    features: list[FeatureMatch] = []  # the hooks to remove, whatever happens
    try:
        accelerator.place(student)
        if teacher is not None:
            accelerator.place(teacher.eval())
        return _train(student, teacher, data, spec, settings, epochs, accelerator, features, progress)
    finally:
        for match in features:
            match.close()  # the hooks and adapters go: the model that is kept is the student alone
        student.to("cpu", memory_format=torch.contiguous_format)  # pruning measures and exports on the CPU
        if teacher is not None:
            teacher.to("cpu", memory_format=torch.contiguous_format)


def _train(
    student: torch.nn.Module,
    teacher: torch.nn.Module | None,
    data: PruneData,
    spec: PreprocessSpec,
    settings: PruneSettings,
    epochs: int,
    accelerator: accelerators.Accelerator,
    features: list[FeatureMatch],
    progress: Progress,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    world, workers, augment = ONE_PROCESS, settings.training.workers, settings.recover_augment
    parts = [part for part in (data.train, data.unlabelled) if part is not None]
    images = torch.utils.data.ConcatDataset([part.with_transform(train_transform(spec, augment)) for part in parts])
    classes = len(parts[0].class_names)
    loader = train_loader(
        images, classes, settings.batch_size, settings.seed, world, accelerator, workers, MIX[augment]
    )
    objective: Distillation | LabelLoss = LabelLoss()
    if teacher is not None:
        if settings.feature_distill > 0:
            example = torch.zeros(2, 3, spec.crop, spec.crop, device=accelerator.device)
            points = families.stage_ends(student, example)  # GoogLeNet: inception3b, 4e, 5b
            features.append(FeatureMatch(student, teacher, points, example))
        match = features[0] if features else None
        objective = Distillation(teacher, settings.distill_temperature, match, settings.feature_distill)
    parameters = [p for module in (student, *objective.modules) for p in module.parameters()]
    optimizer = torch.optim.SGD(parameters, lr=settings.recover_lr, momentum=0.9, weight_decay=1e-4, nesterov=True)
    scheduler = make_scheduler(optimizer, settings.lr_schedule, epochs * len(loader))
    trainer = Trainer(student, objective, optimizer, scheduler, accelerator, world, settings.seed, progress)

    select, selected_by = None, "none: the last epoch is kept"
    if data.select is not None:
        labelled = eval_loader(data.select.with_transform(eval_transform(spec)), world, accelerator, workers)
        select = lambda: trainer.evaluate(labelled)  # noqa: E731
        selected_by = f"top-1 on {len(data.select)} held-out labelled images"
    elif data.select_unlabelled is not None and teacher is not None:
        held_out = eval_loader(data.select_unlabelled.with_transform(eval_transform(spec)), world, accelerator, workers)
        select = lambda: trainer.evaluate(held_out, reference=teacher)  # noqa: E731
        selected_by = f"agreement with the unpruned model on {len(data.select_unlabelled)} held-out unlabelled images"

    def note(record: dict[str, Any], _improved: bool) -> None:
        val = f", selection score {record['val_top1']:.1%}" if "val_top1" in record else ""
        progress.note(
            f"recovery epoch {record['epoch']}/{epochs}: loss {record['train_loss']:.3f}{val}, "
            f"{record['images_per_s']:.1f} img/s"
        )

    history, _ = trainer.fit(loader, epochs, "recovery", select, on_epoch=note, keep_best=True)
    if any(r.get("kept") and r["epoch"] == 0 for r in history):
        progress.note(f"recovery did not improve the selection score ({selected_by}): kept the weights before it")
    return history, {"accelerator": accelerator.to_dict(), "selected_by": selected_by}
