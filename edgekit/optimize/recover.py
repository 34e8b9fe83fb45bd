"""Recovery after pruning: a short fine-tune on the user's images, optionally distilled from the
unpruned model (Hinton et al.: KL between temperature-softened outputs, scaled by T², mixed with
the label loss). The best epoch on the validation images is kept, not the last.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch.nn import functional as F

from edgekit.core.progress import QUIET, Progress
from edgekit.data.datasets import LabelledImages
from edgekit.data.preprocess import PreprocessSpec
from edgekit.model.finetune import evaluate_top1, train_eval_transforms

DISTILL_TEMPERATURE = 4.0
DISTILL_WEIGHT = 0.7  # share of the distillation term; the rest is cross-entropy on the labels


def _distillation_loss(
    student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, t: float = DISTILL_TEMPERATURE
) -> torch.Tensor:
    soft = F.kl_div(F.log_softmax(student / t, dim=1), F.softmax(teacher / t, dim=1), reduction="batchmean")
    return DISTILL_WEIGHT * soft * t * t + (1 - DISTILL_WEIGHT) * F.cross_entropy(student, labels)


def recover(
    student: torch.nn.Module,
    teacher: torch.nn.Module | None,
    train_set: LabelledImages,
    val_set: LabelledImages | None,
    spec: PreprocessSpec,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
    progress: Progress = QUIET,
    temperature: float = DISTILL_TEMPERATURE,
) -> list[dict[str, Any]]:
    """Fine-tune `student` in place for `epochs`; returns per-epoch loss and validation top-1.

    With validation images, the weights kept are those of the best epoch on them, where epoch 0 is the
    model as it came in: recovery that makes things worse on those images is undone. Its record is
    marked `kept`."""
    torch.manual_seed(seed)
    train_tf, eval_tf = train_eval_transforms(spec, augment=True)
    loader = torch.utils.data.DataLoader(
        train_set.with_transform(train_tf),
        batch_size=batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
        drop_last=len(train_set) > batch_size,
    )
    val_loader = (
        torch.utils.data.DataLoader(val_set.with_transform(eval_tf), batch_size=64) if val_set is not None else None
    )
    optimizer = torch.optim.SGD(student.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4, nesterov=True)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * len(loader))
    if teacher is not None:
        teacher.eval()
    history: list[dict[str, Any]] = []
    best_top1, best_state, best_record = -1.0, None, None
    if val_loader is not None:
        best_top1, best_state = evaluate_top1(student, val_loader), copy.deepcopy(student.state_dict())
        best_record = {"epoch": 0, "val_top1": best_top1}
        history.append(best_record)
    for epoch in range(epochs):
        student.train()
        bar = progress.counter(len(loader), f"recovery {epoch + 1}/{epochs}", "batch")
        total = seen = 0.0
        for images, labels in loader:
            logits = student(images)
            if teacher is None:
                loss = F.cross_entropy(logits, labels)
            else:
                with torch.no_grad():
                    teacher_logits = teacher(images)
                loss = _distillation_loss(logits, teacher_logits, labels, temperature)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += float(loss.detach()) * len(labels)
            seen += len(labels)
            bar.update(1, loss=f"{total / seen:.3f}")
        bar.close()
        record: dict[str, Any] = {"epoch": epoch + 1, "train_loss": total / seen}
        if val_loader is not None:
            record["val_top1"] = evaluate_top1(student, val_loader)
            if record["val_top1"] > best_top1:
                best_top1, best_state, best_record = record["val_top1"], copy.deepcopy(student.state_dict()), record
        history.append(record)
        val = f", val top-1 {record['val_top1']:.1%}" if "val_top1" in record else ""
        progress.note(f"recovery epoch {epoch + 1}/{epochs}: loss {record['train_loss']:.3f}{val}")
    if best_state is not None and best_record is not None:
        student.load_state_dict(best_state)
        best_record["kept"] = True
        if best_record["epoch"] == 0:
            progress.note("recovery did not improve top-1 on the selection images: kept the weights before it")
    student.eval()
    return history
