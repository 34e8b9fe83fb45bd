"""A bundle in words, for `edgekit inspect` and `edgekit compile`: every row tolerates a manifest whose
reported sections are odd (they come from a file anyone may have edited), so describing never fails on
what loading does not need."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekit.backends.registry import RUNTIMES
from edgekit.runtime.bundle import unlisted_files
from edgekit.runtime.manifest import Manifest


def _number(value: Any, form: str) -> str:
    return format(value, form) if isinstance(value, (int, float)) and not isinstance(value, bool) else "?"


def parity_line(manifest: Manifest) -> str:
    parity = manifest.section("parity")
    return (
        f"top-1 agreement {_number(parity.get('top1_agreement'), '.2%')}, max abs diff "
        f"{_number(parity.get('max_abs_diff'), '.2e')} vs {parity.get('reference', '?')} on "
        f"{parity.get('images', '?')} {parity.get('inputs', '?')}"
    )


def pruning_line(pruning: dict[str, Any]) -> str | None:
    if not pruning:
        return None
    sparse = ", 2:4 sparse" if pruning.get("sparsity") else ""
    return (
        f"{pruning.get('mode', '?')} {_number(pruning.get('ratio'), '.0%')} of channels, "
        f"{_number(pruning.get('macs_removed'), '.0%')} fewer MACs{sparse}"
    )


def _accuracy_rows(manifest: Manifest) -> dict[str, str]:
    """Top-1 with its 95 % interval per model, and how transform_input was decided, where recorded."""
    rows = {}
    accuracy = manifest.section("accuracy")
    models = accuracy.get("models") if isinstance(accuracy.get("models"), dict) else {}
    for name, row in models.items():
        if isinstance(row, dict) and isinstance(row.get("top1"), (int, float)):
            interval = row.get("top1_ci95")
            span = ""
            if isinstance(interval, list) and len(interval) == 2:
                span = f" (95 % interval {_number(interval[0], '.1%')}–{_number(interval[1], '.1%')})"
            rows[f"top-1 {name}"] = f"{row['top1']:.2%}{span} on {accuracy.get('images', '?')} images"
    evidence = manifest.section("model").get("transform_input_evidence")
    if isinstance(evidence, dict):
        rows["transform_input evidence"] = (
            f"first-layer mismatch {_number(evidence.get('mismatch_transform_on'), '.2f')} on / "
            f"{_number(evidence.get('mismatch_transform_off'), '.2f')} off ({evidence.get('images', '?')} images)"
        )
    return rows


def describe_bundle(path: Path, manifest: Manifest) -> dict[str, str]:
    """Rows of `edgekit inspect` for a verified bundle."""
    source = manifest.section("source")
    model = manifest.section("model")
    classes = manifest.classes
    spec = manifest.preprocessing.to_dict()
    unlisted = unlisted_files(path, manifest)
    rows = {
        "bundle": str(path),
        "files": f"{len(manifest.files)} verified (sha256 matches manifest)",
        "source": f"{manifest.source.file_name} ({source.get('format', '?')}, sha256 {manifest.source.sha256[:12]}…)",
        "target": manifest.target_name,
        "backend": manifest.backend,
        "precision": manifest.precision,
        "classes": f"{len(classes)}: {', '.join(classes[:8])}{' …' if len(classes) > 8 else ''}",
        "transform_input": f"{manifest.transform_input} ({model.get('transform_input_source', 'n/a')})",
        "input": f"{manifest.input.name} {manifest.input.shape}",
        "output": f"{manifest.section('output').get('name', '?')} ({manifest.output_kind})",
        "preprocessing": ", ".join(f"{k}={v}" for k, v in spec.items()),
        "parity": parity_line(manifest),
        "pruning": pruning_line(manifest.section("pruning")) or "none",
        **_accuracy_rows(manifest),
        "2:4 sparsity": "yes (pattern recorded for TensorRT on Ampere+)" if manifest.section("sparsity") else "no",
    }
    backend = RUNTIMES.get(manifest.backend)
    if backend is not None:
        rows.update(backend.describe(path, manifest))
    if unlisted:
        shown = ", ".join(unlisted[:5]) + (" …" if len(unlisted) > 5 else "")
        rows["not in the manifest"] = f"{len(unlisted)} file(s), never loaded: {shown}"
    rows["edgekit"] = manifest.edgekit_version
    return rows
