"""Reading `edgekit bench` results for a report, refusing what cannot be compared.

Every file must be an edgekit bench result of the current schema, and all must come from the same
original model (the same `model_id` and classes): a report that mixes two models would rank apples
against oranges without saying so.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgekit.core.errors import EdgekitError
from edgekit.measure.results import RESULTS_SCHEMA
from edgekit.measure.stats import PairedDifference


@dataclasses.dataclass(frozen=True)
class Variant:
    """One bench result, reduced to what the report compares."""

    name: str
    path: Path
    results: dict[str, Any]

    @property
    def bundle(self) -> dict[str, Any]:
        return self.results["bundle"]

    def latency(self, model: str = "bundle", batch: int = 1) -> dict[str, Any] | None:
        return next((row for row in self.results["latency"][model] if row["batch"] == batch), None)

    @property
    def p50_ms(self) -> float:
        row = self.latency()
        if row is None:  # load_variants refuses such results
            raise RuntimeError("variant without a batch-1 latency")
        return float(row["p50_ms"])

    def _model(self, name: str) -> dict[str, Any] | None:
        accuracy = self.results.get("accuracy") or {}
        return (accuracy.get("models") or {}).get(name)

    @property
    def top1(self) -> float | None:
        row = self._model("bundle")
        return None if row is None else float(row["top1"])

    @property
    def reference_top1(self) -> float | None:
        row = self._model("reference")
        return None if row is None else float(row["top1"])

    @property
    def agreement(self) -> float | None:
        row = self._model("bundle")
        return None if row is None else row.get("top1_agreement_with_reference")

    @property
    def vs_reference(self) -> PairedDifference | None:
        """The bundle's top-1 against the FP32 reference, paired on the same images (what the budget judges)."""
        row = (self._model("bundle") or {}).get("vs_reference")
        return PairedDifference.of_record(row) if isinstance(row, dict) else None

    @property
    def speedup(self) -> float | None:
        """Reference p50 / bundle p50 at batch 1, both timed in this variant's own run, in turns."""
        reference = self.latency("reference")
        return float(reference["p50_ms"]) / self.p50_ms if reference else None

    def interval(self, key: str) -> tuple[float, float] | None:
        """The bundle's 95 % interval for `key` ("top1_ci95", "top1_agreement_ci95"), where bench recorded it."""
        row = self._model("bundle") or {}
        values = row.get(key)
        return (float(values[0]), float(values[1])) if isinstance(values, list) and len(values) == 2 else None


def _read(path: Path) -> dict[str, Any]:
    if path.is_dir():
        path = path / "bench.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EdgekitError(f"{path} does not exist; pass bench.json files written by `edgekit bench`") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EdgekitError(f"{path} is not a readable JSON results file ({exc})") from None
    if not isinstance(data, dict) or data.get("kind") != "edgekit-bench":
        raise EdgekitError(f'{path} is not an `edgekit bench` results file (no "kind": "edgekit-bench")')
    version = data.get("schema_version")
    if version != RESULTS_SCHEMA:
        raise EdgekitError(
            f"{path} has results schema version {version}, this edgekit reads version {RESULTS_SCHEMA}; "
            "re-run `edgekit bench` on the bundle with this edgekit"
        )
    return data


def variant_name(results: dict[str, Any]) -> str:
    """'int8 · pruned 30% · openvino': what a person calls the variant."""
    bundle = results["bundle"]
    parts = [bundle["precision"]]
    pruning = bundle.get("pruning")
    if pruning and pruning.get("ratio"):
        parts.append(f"pruned {pruning['ratio']:.0%}")
    if bundle.get("sparsity"):
        parts.append("2:4")
    parts.append(bundle["backend"])
    device = results.get("device")
    if isinstance(device, dict) and device.get("name"):
        parts.append(f"on {device['name']}")  # the same bundle measured on several devices: one row each
    return " · ".join(parts)


def load_variants(paths: Sequence[Path]) -> list[Variant]:
    if not paths:
        raise EdgekitError("no results given; pass one or more bench.json files (from `edgekit bench`)")
    loaded = [(path, _read(path)) for path in paths]
    first_path, first = loaded[0]
    for path, data in loaded[1:]:
        if data["model_id"] != first["model_id"]:
            raise EdgekitError(
                f"{path} benchmarks a different model ({data['bundle'].get('source_file')}, sha256 "
                f"{data['model_id'][:12]}) than {first_path} ({first['bundle'].get('source_file')}, sha256 "
                f"{first['model_id'][:12]}); a report compares variants of one model"
            )
        if data["classes"] != first["classes"]:
            raise EdgekitError(f"{path} has other classes than {first_path}; a report compares variants of one model")
    for path, data in loaded:
        if not any(row["batch"] == 1 for row in data["latency"]["bundle"]):
            raise EdgekitError(f"{path} has no batch-1 latency; re-run `edgekit bench` with --batch-sizes including 1")
    references = {(data.get("reference") or {}).get("sha256") for _, data in loaded} - {None}
    if len(references) > 1:
        raise EdgekitError(
            "the results were benchmarked against different FP32 reference models; bench every bundle with the "
            "same --reference (the original checkpoint) so speed-ups and accuracy deltas are comparable"
        )
    names: dict[str, int] = {}
    variants = []
    for path, data in loaded:
        name = variant_name(data)
        names[name] = names.get(name, 0) + 1
        variants.append(Variant(name if names[name] == 1 else f"{name} ({names[name]})", path, data))
    return variants
