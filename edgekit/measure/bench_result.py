"""A bench.json read back as types: what `edgekit report` consumes, without string keys.

`BenchResult.from_dict` reads the record `pipeline/bench.py` writes (schema `RESULTS_SCHEMA`); a record of
another shape is refused with the path of the part that is wrong (`ResultsError`), not a KeyError later.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from edgekit.core.errors import EdgekitError
from edgekit.measure.stats import PairedDifference


class ResultsError(EdgekitError):
    """A bench.json that is not what `edgekit bench` writes."""


def _get(record: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = record.get(key) if isinstance(record, Mapping) else None
    if not isinstance(value, kind) or (isinstance(value, bool) and kind in (int, float, NUMBER)):
        raise ResultsError(f"{where}.{key} is missing or not a {getattr(kind, '__name__', kind)}")
    return value


def _optional(record: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    return None if record.get(key) is None else _get(record, key, kind, where)


def _pair(values: Any) -> tuple[float, float] | None:
    return (float(values[0]), float(values[1])) if isinstance(values, list) and len(values) == 2 else None


NUMBER = (int, float)


@dataclasses.dataclass(frozen=True)
class LatencyRow:
    """One batch size's timing (`measure.latency.Timing.to_dict`)."""

    batch: int
    iterations: int
    p50_ms: float
    p90_ms: float | None
    p99_ms: float | None
    images_per_s: float
    samples_ms: tuple[float, ...]

    @classmethod
    def from_dict(cls, row: Mapping[str, Any], where: str) -> LatencyRow:
        return cls(
            _get(row, "batch", int, where),
            _get(row, "iterations", int, where),
            float(_get(row, "p50_ms", NUMBER, where)),
            _optional(row, "p90_ms", NUMBER, where),
            _optional(row, "p99_ms", NUMBER, where),
            float(_get(row, "images_per_s", NUMBER, where)),
            tuple(float(s) for s in row.get("samples_ms") or ()),
        )


@dataclasses.dataclass(frozen=True)
class ModelAccuracy:
    """One model's top-1 on the labelled images (`measure.evaluate.score`)."""

    top1: float
    top1_ci95: tuple[float, float] | None
    per_class_top1: Mapping[str, float]
    confusion: list[list[int]] | None
    agreement: float | None  # with the reference, top-1
    agreement_ci95: tuple[float, float] | None
    vs_reference: PairedDifference | None  # paired, on the same images

    @classmethod
    def from_dict(cls, row: Mapping[str, Any], where: str) -> ModelAccuracy:
        paired = row.get("vs_reference")
        return cls(
            float(_get(row, "top1", NUMBER, where)),
            _pair(row.get("top1_ci95")),
            dict(_get(row, "per_class_top1", dict, where)),
            row.get("confusion"),
            _optional(row, "top1_agreement_with_reference", NUMBER, where),
            _pair(row.get("top1_agreement_ci95")),
            PairedDifference.of_record(paired) if isinstance(paired, dict) else None,
        )


@dataclasses.dataclass(frozen=True)
class Accuracy:
    images: int
    bundle: ModelAccuracy
    reference: ModelAccuracy | None


@dataclasses.dataclass(frozen=True)
class PruningAccuracy:
    """What pruning cost, as `edgekit prune` measured it on its validation images."""

    images: int
    original: tuple[float, tuple[float, float] | None] | None  # top-1, its interval
    pruned: tuple[float, tuple[float, float] | None] | None
    final: tuple[float, tuple[float, float] | None] | None
    drop: PairedDifference


@dataclasses.dataclass(frozen=True)
class Pruning:
    ratio: float | None
    channels: Mapping[str, tuple[int, int]]  # layer: before, after
    accuracy: PruningAccuracy | None

    @classmethod
    def from_dict(cls, record: Mapping[str, Any], where: str) -> Pruning:
        channels = {str(k): (int(v[0]), int(v[1])) for k, v in (record.get("channels") or {}).items()}
        accuracy = record.get("accuracy")
        measured = None
        if isinstance(accuracy, dict) and isinstance(accuracy.get("drop_vs_original"), dict):

            def top1(name: str) -> tuple[float, tuple[float, float] | None] | None:
                row = accuracy.get(name)
                return (float(row["top1"]), _pair(row.get("ci95"))) if isinstance(row, dict) else None

            drop = accuracy["drop_vs_original"]
            measured = PruningAccuracy(
                int(drop["images"]), top1("original"), top1("pruned"), top1("final"), PairedDifference.of_record(drop)
            )
        return cls(_optional(record, "ratio", NUMBER, where), channels, measured)


@dataclasses.dataclass(frozen=True)
class BundleFacts:
    path: str
    precision: str
    execution_precision: str | None
    backend: str
    target: str
    target_kind: str | None
    model_bytes: int
    source_file: str | None
    keep_fp32: tuple[str, ...]
    pruning: Pruning | None
    sparse: bool


@dataclasses.dataclass(frozen=True)
class StageTimes:
    """Median ms per stage, one encoded file to a label (the bundle's decode path)."""

    read_ms: float | None
    decode_ms: float | None
    resize_crop_ms: float | None
    normalise_ms: float | None
    preprocess_ms: float
    network_ms: float
    postprocess_ms: float
    end_to_end_p50_ms: float | None
    end_to_end_vs_network: float | None


@dataclasses.dataclass(frozen=True)
class Environment:
    date: str
    edgekit: str
    cpu: str
    threads: int
    libraries: Mapping[str, str]
    command: str


@dataclasses.dataclass(frozen=True)
class BenchResult:
    model_id: str
    classes: tuple[str, ...]
    bundle: BundleFacts
    latency: Mapping[str, tuple[LatencyRow, ...]]  # "bundle", "reference"
    accuracy: Accuracy | None
    reference_kind: str | None
    reference_sha256: str | None
    measured_on: str
    stages: StageTimes | None
    environment: Environment
    device_name: str | None  # measured on a device over SSH

    def row(self, model: str = "bundle", batch: int = 1) -> LatencyRow | None:
        return next((row for row in self.latency.get(model, ()) if row.batch == batch), None)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BenchResult:
        bundle = _get(data, "bundle", dict, "results")
        pruning = bundle.get("pruning")
        facts = BundleFacts(
            _get(bundle, "path", str, "bundle"),
            _get(bundle, "precision", str, "bundle"),
            _optional(bundle, "execution_precision", str, "bundle"),
            _get(bundle, "backend", str, "bundle"),
            _get(bundle, "target", str, "bundle"),
            _optional(bundle, "target_kind", str, "bundle"),
            _get(bundle, "model_bytes", int, "bundle"),
            _optional(bundle, "source_file", str, "bundle"),
            tuple(bundle.get("keep_fp32") or ()),
            Pruning.from_dict(pruning, "bundle.pruning") if isinstance(pruning, dict) and pruning else None,
            bool(bundle.get("sparsity")),
        )
        latency_record = _get(data, "latency", dict, "results")
        latency = {
            model: tuple(LatencyRow.from_dict(row, f"latency.{model}") for row in latency_record.get(model) or ())
            for model in ("bundle", "reference")
        }
        reference = data.get("reference") if isinstance(data.get("reference"), dict) else {}
        env = _get(data, "environment", dict, "results")
        device = data.get("device")
        return cls(
            _get(data, "model_id", str, "results"),
            tuple(_get(data, "classes", list, "results")),
            facts,
            latency,
            _accuracy(data.get("accuracy")),
            reference.get("kind"),
            reference.get("sha256"),
            _get(data, "measured_on", str, "results"),
            _stages(data.get("stages")),
            Environment(
                str(env.get("date", "")),
                str(env.get("edgekit", "")),
                str(env.get("cpu", "")),
                int(env.get("threads", 0)),
                dict(env.get("libraries") or {}),
                str(env.get("command", "")),
            ),
            device.get("name") if isinstance(device, dict) else None,
        )


def _accuracy(record: Any) -> Accuracy | None:
    if not isinstance(record, dict):
        return None
    models = _get(record, "models", dict, "accuracy")
    reference = models.get("reference")
    return Accuracy(
        _get(record, "images", int, "accuracy"),
        ModelAccuracy.from_dict(_get(models, "bundle", dict, "accuracy.models"), "accuracy.models.bundle"),
        ModelAccuracy.from_dict(reference, "accuracy.models.reference") if isinstance(reference, dict) else None,
    )


def _stages(record: Any) -> StageTimes | None:
    if not isinstance(record, dict) or not isinstance(record.get("network_ms"), NUMBER):
        return None

    def number(key: str) -> float | None:
        value = record.get(key)
        return float(value) if isinstance(value, NUMBER) else None

    return StageTimes(
        number("read_ms"), number("decode_ms"), number("resize_crop_ms"), number("normalise_ms"),
        number("preprocess_ms") or 0.0, float(record["network_ms"]), number("postprocess_ms") or 0.0,
        number("end_to_end_p50_ms"), number("end_to_end_vs_network"),
    )  # fmt: skip
