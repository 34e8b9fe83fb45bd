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
from edgekit.measure.bench_result import BenchResult, BundleFacts, LatencyRow, ModelAccuracy, ResultsError
from edgekit.measure.results import RESULTS_SCHEMA
from edgekit.measure.stats import PairedDifference


@dataclasses.dataclass(frozen=True)
class Variant:
    """One bench result (typed: `measure.bench_result`), reduced to what the report compares."""

    name: str
    path: Path
    result: BenchResult

    @property
    def bundle(self) -> BundleFacts:
        return self.result.bundle

    def latency(self, model: str = "bundle", batch: int = 1) -> LatencyRow | None:
        return self.result.row(model, batch)

    @property
    def p50_ms(self) -> float:
        row = self.latency()
        if row is None:  # load_variants refuses such results
            raise RuntimeError("variant without a batch-1 latency")
        return row.p50_ms

    @property
    def reference_p50_ms(self) -> float | None:
        """The FP32 reference's batch-1 p50, timed in this variant's own run, in turns with it."""
        row = self.latency("reference")
        return row.p50_ms if row else None

    @property
    def accuracy(self) -> ModelAccuracy | None:
        return self.result.accuracy.bundle if self.result.accuracy else None

    @property
    def top1(self) -> float | None:
        return self.accuracy.top1 if self.accuracy else None

    @property
    def reference_top1(self) -> float | None:
        reference = self.result.accuracy.reference if self.result.accuracy else None
        return reference.top1 if reference else None

    @property
    def vs_reference(self) -> PairedDifference | None:
        """The bundle's top-1 against the FP32 reference, paired on the same images (what the budget judges)."""
        return self.accuracy.vs_reference if self.accuracy else None

    @property
    def speedup(self) -> float | None:
        """Reference p50 / bundle p50 at batch 1, both timed in this variant's own run, in turns."""
        reference = self.reference_p50_ms
        return reference / self.p50_ms if reference else None


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


def variant_name(result: BenchResult) -> str:
    """'int8 · pruned 30% · openvino': what a person calls the variant."""
    bundle = result.bundle
    parts = [bundle.precision]
    if bundle.pruning and bundle.pruning.ratio:
        parts.append(f"pruned {bundle.pruning.ratio:.0%}")
    if bundle.sparse:
        parts.append("2:4")
    parts.append(bundle.backend)
    if result.device_name:
        parts.append(f"on {result.device_name}")  # the same bundle measured on several devices: one row each
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
        try:
            result = BenchResult.from_dict(data)
        except ResultsError as exc:
            message = f"{path} is not a complete `edgekit bench` result ({exc}); run `edgekit bench` again"
            raise EdgekitError(message) from None
        name = variant_name(result)
        names[name] = names.get(name, 0) + 1
        variants.append(Variant(name if names[name] == 1 else f"{name} ({names[name]})", path, result))
    return variants
