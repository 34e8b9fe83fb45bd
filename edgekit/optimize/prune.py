"""Structured channel pruning of any torchvision classifier edgekit knows, with torch-pruning, judged by
measured latency.

    measure ─► prune (a ratio, or in steps until a MACs/latency target) ─► 2:4 ─► recover ─► measure

torch-pruning's dependency graph keeps every coupling consistent: inception and dense concats (pruning a
branch's output prunes the matching input channels of every consumer), residual adds (both sides of an add
lose the same channels), depthwise convolutions (channels and groups together) and squeeze-excitation;
edgekit never hand-edits that. The classifier's outputs are never pruned and the aux heads are gone before
tracing. Latency is the FP32 batch-1 p50 of the target's own backend on this host: MACs alone are known to
mislead.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgekit.core.errors import EdgekitError
from edgekit.core.progress import QUIET, Progress
from edgekit.data.datasets import LabelledImages, folder_dataset, held_out, stratified_split, unlabelled_folder
from edgekit.data.preprocess import PreprocessSpec
from edgekit.measure.decide import Budget, Verdict, top1_drop_pts
from edgekit.measure.stats import PairedDifference, wilson
from edgekit.model import families
from edgekit.model.architecture import channel_counts
from edgekit.optimize import sparsity
from edgekit.optimize.prune_config import PruneSettings

STEP = 0.05  # ratio added per step when searching for a MACs or latency target
TAYLOR_BATCHES = 4
VAL_SHARE = 0.1  # of --recover-data, held out when no --val is given


@dataclasses.dataclass
class PruneData:
    train: LabelledImages | None  # recovery (and Taylor) images
    val: LabelledImages | None  # before/after accuracy
    select: LabelledImages | None = None  # picks the best recovery epoch; never the images reported on
    unlabelled: LabelledImages | None = None  # recovery images without labels (distilled only)
    select_unlabelled: LabelledImages | None = None  # picks the best epoch by agreement when nothing is labelled

    @property
    def recovery_images(self) -> int:
        return sum(len(part) for part in (self.train, self.unlabelled) if part is not None)


@dataclasses.dataclass
class PruneOutcome:
    module: nn.Module  # the pruned (and recovered) model, eval mode
    report: dict[str, Any]
    final_correct: np.ndarray | None = None  # per validation image: the pruned model's top-1 is the label
    original_correct: np.ndarray | None = None


@dataclasses.dataclass(frozen=True)
class LatencyProbe:
    """How the pipeline times a candidate: module → (FP32 batch-1 p50 ms, or None where this host is not the
    device; FP32 ONNX bytes). Pruning never imports a backend: the pipeline supplies this."""

    p50_and_size: Callable[[nn.Module], tuple[float | None, int]]
    how: str  # in words, for the report


class Meter:
    """MACs, parameters, FP32 ONNX size and latency of a module, measured the same way before and after,
    so the two columns of the report are comparable."""

    def __init__(self, crop: int, latency: LatencyProbe) -> None:
        self.crop, self.latency = crop, latency
        self.latency_note = latency.how

    def macs(self, module: nn.Module) -> tuple[int, int]:
        import torch_pruning as tp

        macs, params = tp.utils.count_ops_and_params(module, torch.zeros(1, 3, self.crop, self.crop))
        return int(macs), int(params)

    def latency_ms(self, module: nn.Module) -> tuple[float | None, int]:
        """(p50 ms or None, FP32 ONNX bytes)."""
        return self.latency.p50_and_size(module)

    def all(self, module: nn.Module) -> dict[str, Any]:
        macs, params = self.macs(module)
        latency, size = self.latency_ms(module)
        return {"params": params, "macs": macs, "onnx_bytes": size, "latency_ms": latency}


def _importance(name: str) -> Any:
    import torch_pruning as tp

    if name == "taylor":
        return tp.importance.GroupTaylorImportance()
    return tp.importance.GroupMagnitudeImportance(p=1 if name == "l1" else 2)


def _eval_loader(
    dataset: LabelledImages, spec: PreprocessSpec, batch_size: int, shuffle_seed: int | None = None
) -> Any:
    from edgekit.train.augment import eval_transform

    eval_tf = eval_transform(spec)
    generator = torch.Generator().manual_seed(shuffle_seed) if shuffle_seed is not None else None
    return torch.utils.data.DataLoader(
        dataset.with_transform(eval_tf), batch_size=batch_size, shuffle=generator is not None, generator=generator
    )


def _taylor_gradients(
    module: nn.Module, dataset: LabelledImages, spec: PreprocessSpec, batch_size: int, seed: int
) -> None:
    """Taylor importance is |w · dL/dw|: fill .grad from a few shuffled batches of real, labelled images
    (folders list images class by class: unshuffled, every batch would come from the first class)."""
    module.eval()  # BatchNorm statistics stay as trained
    module.zero_grad()
    for index, (images, labels) in enumerate(_eval_loader(dataset, spec, batch_size, shuffle_seed=seed)):
        if index == TAYLOR_BATCHES:
            break
        nn.functional.cross_entropy(module(images), labels).backward()


def correct_per_image(module: nn.Module, dataset: LabelledImages, spec: PreprocessSpec) -> np.ndarray:
    """Whether `module`'s top-1 is each image's label, in the dataset's order (for paired comparisons)."""
    module.eval()
    hits = []
    with torch.no_grad():
        for images, labels in _eval_loader(dataset, spec, 64):
            hits.append((module(images).argmax(1) == labels).numpy())
    return np.concatenate(hits) if hits else np.zeros(0, dtype=bool)


def _accuracy(correct: np.ndarray) -> dict[str, Any]:
    low, high = wilson(int(correct.sum()), len(correct))
    return {"top1": float(correct.mean()), "ci95": [low, high], "images": len(correct)}


def _prune_channels(
    module: nn.Module,
    settings: PruneSettings,
    meter: Meter,
    before: dict[str, Any],
    data: PruneData,
    spec: PreprocessSpec,
    progress: Progress,
    after_step: Callable[[int], None] | None = None,
) -> tuple[float, list[dict[str, Any]]]:
    """Prune in place; returns (ratio reached, one record per step). `after_step(step)` runs after each step
    of a ratio pruned in several (`settings.steps`): the recovery between them."""
    import torch_pruning as tp

    if settings.mode == "ratio":
        final, steps = float(settings.ratio or 0.0), settings.steps
    else:
        final, steps = settings.max_ratio, max(1, round(settings.max_ratio / STEP))
    pruner = tp.pruner.BasePruner(
        module,
        torch.zeros(1, 3, spec.crop, spec.crop),
        importance=_importance(settings.importance),
        pruning_ratio=final,
        iterative_steps=steps,
        ignored_layers=[families.classifier(module, spec.crop)],  # the classifier's outputs are the user's classes
        round_to=settings.round_to,
        global_pruning=settings.scope == "global",
        max_pruning_ratio=settings.max_ratio if settings.scope == "global" else 1.0,
    )
    if settings.mode != "ratio" and _target_met(settings, before):
        raise EdgekitError(
            f"the unpruned model already meets the target ({_format_macs(before['macs'])} MACs, "
            f"{before['latency_ms'] or 0:.2f} ms); nothing to prune. Nothing was written"
        )
    taylor_images = data.train or data.val
    records: list[dict[str, Any]] = []
    for step in range(1, steps + 1):
        if settings.importance == "taylor" and taylor_images is not None:
            _taylor_gradients(module, taylor_images, spec, settings.batch_size, settings.seed + step)
        pruner.step()
        module.zero_grad(set_to_none=True)
        ratio = final * step / steps
        macs, params = meter.macs(module)
        record: dict[str, Any] = {"ratio": round(ratio, 4), "macs": macs, "params": params}
        if settings.mode == "target-latency":
            record["latency_ms"] = meter.latency_ms(module)[0]
        records.append(record)
        progress.note(_describe_step(record, before))
        if after_step is not None:
            after_step(step)
        if _target_met(settings, record):
            return ratio, records
    if settings.mode == "ratio":
        return final, records
    best = records[-1]
    wanted = (
        f"{settings.target_latency_ms:g} ms"
        if settings.mode == "target-latency"
        else f"{_format_macs(settings.target_macs or 0)} MACs"
    )
    reached = (
        f"{best['latency_ms']:.2f} ms" if settings.mode == "target-latency" else f"{_format_macs(best['macs'])} MACs"
    )
    raise EdgekitError(
        f"target {wanted} not reached: pruning {settings.max_ratio:.0%} of every layer's channels (--max-ratio) "
        f"gives {reached} (from {_format_macs(before['macs'])} MACs); relax the target, raise --max-ratio, "
        "or combine pruning with --precision int8. Nothing was written"
    )


def _target_met(settings: PruneSettings, record: dict[str, Any]) -> bool:
    if settings.mode == "target-macs":
        return record["macs"] <= (settings.target_macs or 0)
    if settings.mode == "target-latency":
        return record["latency_ms"] is not None and record["latency_ms"] <= (settings.target_latency_ms or 0)
    return False


def _format_macs(macs: float) -> str:
    return f"{macs / 1e9:.2f}G" if macs >= 1e9 else f"{macs / 1e6:.0f}M"


def _describe_step(record: dict[str, Any], before: dict[str, Any]) -> str:
    latency = f", {record['latency_ms']:.2f} ms" if record.get("latency_ms") is not None else ""
    return (
        f"pruned {record['ratio']:.0%} of channels: {_format_macs(record['macs'])} MACs "
        f"({1 - record['macs'] / before['macs']:.0%} fewer){latency}"
    )


def _shares(epochs: int, steps: int) -> list[int]:
    """Recovery epochs after each of `steps` pruning steps: shared evenly, the remainder after the last ones."""
    return [epochs // steps + (1 if i >= steps - epochs % steps else 0) for i in range(steps)]


def prune_module(
    module: nn.Module,
    settings: PruneSettings,
    spec: PreprocessSpec,
    data: PruneData,
    latency: LatencyProbe,
    progress: Progress = QUIET,
    original_correct: np.ndarray | None = None,
    before: dict[str, Any] | None = None,
) -> PruneOutcome:
    """Prune a deployable model (modified in place and returned) and measure what it gained and lost.

    Accuracy is kept per image on the validation images, so the drop against the original model is a
    paired comparison (`PairedDifference`); `original_correct` and `before` (its MACs, size and latency)
    skip re-measuring the original: a search prunes the same model many times."""
    torch.manual_seed(settings.seed)
    teacher = copy.deepcopy(module).eval() if settings.distilling else None  # the unpruned model, to distil from
    meter = Meter(spec.crop, latency)
    channels_before = channel_counts(module)
    if before is None:
        progress.note("measuring the unpruned model")
        before = meter.all(module)
    correct: dict[str, np.ndarray] = {}
    if data.val is not None:
        correct["original"] = (
            original_correct if original_correct is not None else correct_per_image(module, data.val, spec)
        )

    recovery: dict[str, Any] | None = None
    recovering = data.recovery_images > 0
    shares = _shares(settings.epochs, settings.steps) if recovering else [0] * settings.steps

    def recover_for(epochs: int, what: str) -> None:
        nonlocal recovery
        if epochs <= 0 or not recovering:
            return
        from edgekit.optimize.recover import recover

        unlabelled = f" ({len(data.unlabelled)} unlabelled)" if data.unlabelled is not None else ""
        progress.note(
            f"recovering {what} on {data.recovery_images} images{unlabelled} for {epochs} epoch(s)"
            + (f" with distillation from the unpruned model (T={settings.distill_temperature:g})" if teacher else "")
            + (f", feature weight {settings.feature_distill:g}" if teacher and settings.feature_distill else "")
        )
        history, how = recover(module, teacher, data, spec, settings, epochs, progress)
        recovery = recovery or {
            "epochs": 0,
            "distill": settings.distilling,
            "images": len(data.train) if data.train is not None else 0,
            "unlabelled_images": len(data.unlabelled) if data.unlabelled is not None else 0,
            "augment": settings.recover_augment,
            **how,
            "history": [],
        }
        recovery["epochs"] += epochs
        recovery["history"] += history

    def between_steps(step: int) -> None:
        if step < settings.steps:  # the last step's share runs after sparsity, like one-shot recovery
            if data.val is not None:
                correct[f"step {step}"] = correct_per_image(module, data.val, spec)
            recover_for(shares[step - 1], f"after step {step}/{settings.steps}")

    ratio, steps = 0.0, []
    if settings.mode not in ("none", "search"):
        ratio, steps = _prune_channels(
            module, settings, meter, before, data, spec, progress, between_steps if settings.steps > 1 else None
        )
    sparse_layers: list[str] = []
    if settings.sparsity is not None:
        sparse_layers = sparsity.apply_2_4(module)
        progress.note(f"2:4 sparsity: zeroed half the weights of {len(sparse_layers)} convolutions")
    if data.val is not None:
        correct["pruned"] = correct_per_image(module, data.val, spec)
    recover_for(shares[-1], "the pruned model" if settings.steps == 1 else f"after step {settings.steps}")
    sparsity.finalize(module)
    module.eval()
    if sparse_layers and sparsity.sparse_layers(module) != sparse_layers:  # the masks must have held
        raise RuntimeError("2:4 pattern lost during recovery")
    if data.val is not None:
        correct["final"] = correct_per_image(module, data.val, spec)

    progress.note("measuring the pruned model")
    after = meter.all(module)
    channels_after = channel_counts(module)
    report = {
        "mode": settings.mode,
        "settings": settings.to_dict(),
        "ratio": round(ratio, 4),
        "steps": steps,
        "before": before,
        "after": after,
        "macs_removed": 1 - after["macs"] / before["macs"],
        "latency": {"input": [1, 3, spec.crop, spec.crop], "how": meter.latency_note},
        "top1": _top1_record(correct, recovery is not None),
        "val_images": len(data.val) if data.val is not None else 0,
        "accuracy": _accuracy_record(correct),
        "recovery": recovery,
        "channels": {name: [channels_before[name], channels_after[name]] for name in channels_before},
        "sparsity": (
            {
                "pattern": sparsity.PATTERN,
                "layers": sparse_layers,
                "verified": True,
                "speed-up": "TensorRT sparse weights on Ampere or newer GPUs only; CPU backends run the zeros",
            }
            if sparse_layers
            else None
        ),
    }
    return PruneOutcome(module, report, correct.get("final"), correct.get("original"))


def _top1_record(correct: dict[str, np.ndarray], recovered: bool) -> dict[str, float | None]:
    """The short form kept for older readers: before, pruned, and recovered (or after)."""
    value = {k: float(v.mean()) if len(v) else None for k, v in correct.items()}
    return {"before": value.get("original"), "pruned": value.get("pruned"),
            "recovered" if recovered else "after": value.get("final")}  # fmt: skip


def _accuracy_record(correct: dict[str, np.ndarray]) -> dict[str, Any] | None:
    """Honest accounting: the original, pruned and final models' top-1 on the same images, each with its
    Wilson 95 % interval, and the final model's drop against the original as a paired comparison."""
    if "original" not in correct:
        return None
    record: dict[str, Any] = {name: _accuracy(values) for name, values in correct.items()}
    record["drop_vs_original"] = PairedDifference.of(correct["original"], correct["final"]).to_dict()
    return record


def _matching(dataset: LabelledImages, class_names: tuple[str, ...], names_source: str, flag: str) -> LabelledImages:
    """The dataset relabelled to the model's class order; an error if its classes are not the model's."""
    if names_source == "generated":  # a bare state_dict: only the count can be checked
        if len(dataset.class_names) != len(class_names):
            raise EdgekitError(
                f"{flag} has {len(dataset.class_names)} classes but the model has {len(class_names)}; "
                "use images of the model's own classes"
            )
        return dataset
    if set(dataset.class_names) != set(class_names):
        extra = sorted(set(dataset.class_names) - set(class_names))
        missing = sorted(set(class_names) - set(dataset.class_names))
        raise EdgekitError(
            f"{flag} classes do not match the model's (not in the model: {', '.join(extra) or '-'}; "
            f"missing: {', '.join(missing) or '-'}); use one sub-directory per model class"
        )
    index = {name: i for i, name in enumerate(class_names)}
    samples = [(source, index[dataset.class_names[label]]) for source, label in dataset.samples]
    return dataclasses.replace(dataset, samples=samples, class_names=class_names)


def load_prune_data(
    settings: PruneSettings,
    val: Path | None,
    class_names: tuple[str, ...],
    names_source: str,
    progress: Progress = QUIET,
) -> PruneData:
    """Recovery images, the images accuracy is reported on, and a held-out share of the recovery images that
    picks the best recovery epoch (choosing on the reported images would flatter the result)."""
    train = select = unlabelled = select_unlabelled = None
    if settings.recover_data is not None:
        train = _matching(folder_dataset(settings.recover_data, progress), class_names, names_source, "--recover-data")
        train, select = stratified_split(train, VAL_SHARE, settings.seed)
    if settings.recover_unlabelled is not None:
        unlabelled = unlabelled_folder(settings.recover_unlabelled, class_names, progress)
        if select is None:  # nothing labelled to pick the best epoch: agreement with the unpruned model does
            unlabelled, select_unlabelled = held_out(unlabelled, VAL_SHARE, settings.seed)
    report = _matching(folder_dataset(val, progress), class_names, names_source, "--val") if val else select
    return PruneData(train, report, select, unlabelled, select_unlabelled)


def final_top1(report: dict[str, Any]) -> float | None:
    """Top-1 of the model pruning produced: after recovery when there was one."""
    top1 = report["top1"]
    return top1.get("recovered", top1.get("after"))


def accuracy_drop_pts(report: dict[str, Any]) -> float | None:
    """Top-1 points pruning cost on the validation images (None when there were none)."""
    before, final = report["top1"]["before"], final_top1(report)
    return None if before is None or final is None else top1_drop_pts(before, final)


def check_accuracy_drop(report: dict[str, Any], max_drop: float | None) -> None:
    """Refuse a pruned model that does not ship under the one accuracy rule (`measure.decide.Budget`): a drop
    above the budget is refused even inside the noise (the message says how many images would tell); one
    within it but unconfirmed ships, and the report says so."""
    drop = accuracy_drop_pts(report)
    if max_drop is None or drop is None:
        return
    paired = (report.get("accuracy") or {}).get("drop_vs_original")
    if paired:
        verdict = Budget(max_drop).judge_counts(paired)
    else:  # no per-image record (an older report): the point estimate alone
        verdict = Verdict("pass" if drop <= max_drop else "inside_noise")
    report["verdict"] = verdict.verdict
    if verdict.ships:
        return
    detail = ""
    if paired:
        low, high = paired["ci95_pts"]
        how = verdict.words("labelled images") or "beyond the noise"
        detail = f", 95 % interval {low:.2f} to {high:.2f} pts: above the budget, {how}"
    raise EdgekitError(
        f"pruning costs {drop:.2f} top-1 points ({report['top1']['before']:.2%} → {final_top1(report):.2%} on "
        f"{report['val_images']} images{detail}), more than --max-accuracy-drop {max_drop:g}; prune less, recover "
        "longer (--recover-epochs, --distill), or let edgekit search the ratio (--max-accuracy-drop without "
        "--prune-ratio). Nothing was written"
    )
