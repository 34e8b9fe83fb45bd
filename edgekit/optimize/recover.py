"""Recovery after pruning: a short fine-tune on the user's images, optionally distilled from the
unpruned model (Hinton et al.: KL between temperature-softened outputs, scaled by T², mixed with
the label loss), optionally also at the inception stages' outputs (FitNets: a 1×1 convolution maps the
pruned model's fewer channels onto the unpruned model's, trained along and then dropped). The best
epoch on the validation images is kept, not the last.
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
FEATURE_POINTS = ("inception3b", "inception4e", "inception5b")  # the end of each inception stage


class FeatureMatch:
    """Captures the FEATURE_POINTS outputs of a student and its teacher; `loss()` after both forwards is the
    mean over points of MSE(adapter(student), teacher) / teacher's variance (scale-free across stages)."""

    def __init__(self, student: torch.nn.Module, teacher: torch.nn.Module, example: torch.Tensor) -> None:
        self.outputs: dict[tuple[str, str], torch.Tensor] = {}
        self.handles = []
        for role, model in (("student", student), ("teacher", teacher)):
            for point in FEATURE_POINTS:
                module = getattr(model, point)
                self.handles.append(module.register_forward_hook(self._keep(role, point)))
        with torch.no_grad():
            student.eval()
            student(example)
            teacher(example)
        self.adapters = torch.nn.ModuleDict(
            {
                point: torch.nn.Conv2d(
                    self.outputs[("student", point)].shape[1], self.outputs[("teacher", point)].shape[1], 1, bias=False
                )
                for point in FEATURE_POINTS
            }
        )

    def _keep(self, role: str, point: str) -> Any:
        def hook(_module: torch.nn.Module, _inputs: Any, output: torch.Tensor) -> None:
            self.outputs[(role, point)] = output

        return hook

    def loss(self) -> torch.Tensor:
        terms = []
        for point in FEATURE_POINTS:
            teacher = self.outputs[("teacher", point)].detach()
            student = self.adapters[point](self.outputs[("student", point)])
            terms.append(F.mse_loss(student, teacher) / (teacher.var() + 1e-6))
        return torch.stack(terms).mean()

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


def _scheduler(optimizer: torch.optim.Optimizer, schedule: str, steps: int, lr: float) -> Any:
    if schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=max(1, steps))
    if schedule == "constant":
        return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, steps))


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
    schedule: str = "cosine",
    feature_weight: float = 0.0,
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
    features = None
    if teacher is not None:
        teacher.eval()
        if feature_weight > 0:
            example = torch.zeros(2, 3, spec.crop, spec.crop)
            features = FeatureMatch(student, teacher, example)
    parameters = list(student.parameters()) + (list(features.adapters.parameters()) if features else [])
    optimizer = torch.optim.SGD(parameters, lr=lr, momentum=0.9, weight_decay=1e-4, nesterov=True)
    scheduler = _scheduler(optimizer, schedule, epochs * len(loader), lr)
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
                if features is not None:
                    loss = loss + feature_weight * features.loss()
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
    if features is not None:
        features.close()  # the hooks and adapters go: the model that is kept is the student alone
    if best_state is not None and best_record is not None:
        student.load_state_dict(best_state)
        best_record["kept"] = True
        if best_record["epoch"] == 0:
            progress.note("recovery did not improve top-1 on the selection images: kept the weights before it")
    student.eval()
    return history
