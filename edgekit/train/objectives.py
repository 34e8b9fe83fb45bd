"""What the one training loop minimises, given the model's output and the batch's soft targets (a zero row:
an unlabelled image).

- `LabelLoss`: cross-entropy on the labels, plus the auxiliary heads' (GoogLeNet's, Inception v3's), each weighted.
- `Distillation`: Hinton et al.'s KL between temperature-softened outputs of the student and a teacher (the
  unpruned model), scaled by T², mixed with cross-entropy on whatever labels the batch has; unlabelled
  images are distilled only. The teacher sees the same (augmented, mixed) images: its soft labels follow
  the augmentation, which is what lets unlabelled photos of the scene teach.
- `FeatureMatch` (FitNets): a 1×1 convolution maps the student's fewer channels at named points onto the
  teacher's, trained along and dropped afterwards.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch.nn import functional as F

DISTILL_TEMPERATURE = 4.0
DISTILL_WEIGHT = 0.7  # share of the distillation term where a batch has labels; the rest is cross-entropy


def labelled_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
    """Mean cross-entropy over the rows with a target (zero rows are skipped without a host sync)."""
    per_image = F.cross_entropy(logits.float(), targets, label_smoothing=smoothing, reduction="none")
    has_label = targets.sum(1)
    return (per_image * has_label).sum() / has_label.sum().clamp(min=1.0)


def _main_logits(outputs: Any) -> torch.Tensor:
    return outputs if isinstance(outputs, torch.Tensor) else outputs.logits


class LabelLoss:
    """Cross-entropy on the labels; `aux_weights` maps the fields of a train-mode output that carry trained
    auxiliary logits (GoogLeNetOutputs' aux_logits1/2, InceptionOutputs' aux_logits) to their loss weights."""

    def __init__(self, aux_weights: Mapping[str, float] | None = None, smoothing: float = 0.0) -> None:
        self.aux_weights, self.smoothing = dict(aux_weights or {}), smoothing

    modules: tuple[torch.nn.Module, ...] = ()  # nothing trained beside the model

    def __call__(self, outputs: Any, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = _main_logits(outputs)
        loss = labelled_cross_entropy(logits, targets, self.smoothing)
        if not isinstance(outputs, torch.Tensor):  # a named tuple: (logits, aux logits...)
            for field, weight in self.aux_weights.items():
                aux = getattr(outputs, field, None)
                if aux is not None:
                    loss = loss + weight * labelled_cross_entropy(aux, targets, self.smoothing)
        return loss, logits


class FeatureMatch:
    """Captures the outputs of modules `points` of a student and its teacher; `loss()` after both forwards is
    the mean over points of MSE(adapter(student), teacher) / teacher's variance (scale-free across stages)."""

    def __init__(
        self, student: torch.nn.Module, teacher: torch.nn.Module, points: Sequence[str], example: torch.Tensor
    ) -> None:
        self.points = tuple(points)
        self.outputs: dict[tuple[str, str], torch.Tensor] = {}
        self.handles = [
            model.get_submodule(point).register_forward_hook(self._keep(role, point))
            for role, model in (("student", student), ("teacher", teacher))
            for point in self.points
        ]
        was_training = student.training
        with torch.no_grad():
            student.eval()
            student(example)
            teacher(example)
        student.train(was_training)
        self.adapters = torch.nn.ModuleDict(
            {
                point.replace(".", "_"): torch.nn.Conv2d(
                    self.outputs[("student", point)].shape[1], self.outputs[("teacher", point)].shape[1], 1, bias=False
                )
                for point in self.points
            }
        ).to(example.device)

    def _keep(self, role: str, point: str) -> Any:
        def hook(_module: torch.nn.Module, _inputs: Any, output: torch.Tensor) -> None:
            self.outputs[(role, point)] = output

        return hook

    def loss(self) -> torch.Tensor:
        terms = []
        for point in self.points:
            teacher = self.outputs[("teacher", point)].detach().float()
            student = self.adapters[point.replace(".", "_")](self.outputs[("student", point)])
            terms.append(F.mse_loss(student.float(), teacher) / (teacher.var() + 1e-6))
        return torch.stack(terms).mean()

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


class Distillation:
    """Distillation from `teacher` (in eval mode, never trained), optionally with `features` matched."""

    def __init__(
        self,
        teacher: torch.nn.Module,
        temperature: float = DISTILL_TEMPERATURE,
        features: FeatureMatch | None = None,
        feature_weight: float = 0.0,
    ) -> None:
        self.teacher, self.temperature = teacher.eval(), temperature
        self.features, self.feature_weight = features, feature_weight
        self.modules: tuple[torch.nn.Module, ...] = (features.adapters,) if features is not None else ()

    def __call__(self, outputs: Any, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = _main_logits(outputs)
        with torch.no_grad():
            teacher = _main_logits(self.teacher(images))
        t = self.temperature
        soft = F.kl_div(
            F.log_softmax(logits.float() / t, dim=1), F.softmax(teacher.float() / t, dim=1), reduction="batchmean"
        )
        soft = soft * t * t
        labels = labelled_cross_entropy(logits, targets)
        # Images with labels: the usual mix; a batch of unlabelled images only: the soft term alone.
        loss = torch.where(targets.sum() > 0, DISTILL_WEIGHT * soft + (1 - DISTILL_WEIGHT) * labels, soft)
        if self.features is not None and self.feature_weight > 0:
            loss = loss + self.feature_weight * self.features.loss()
        return loss, logits
