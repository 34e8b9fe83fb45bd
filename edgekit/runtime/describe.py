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


def accuracy_line(manifest: Manifest) -> str:
    """The build against FP32, on real images: for a quantized build the guard's held-out figure (or the --val
    parity), never a figure from synthetic inputs, which only show that the model runs."""
    parity = manifest.section("parity")
    if manifest.precision == "fp32" or parity.get("inputs") != "synthetic":
        return parity_line(manifest)
    guard = manifest.section("quantization").get("guard")
    if isinstance(guard, dict) and isinstance(guard.get("top1_agreement"), (int, float)):
        needed = guard.get("images_needed")
        settle = f", about {needed} images would settle it" if needed else ""
        return (
            f"top-1 agreement {_number(guard['top1_agreement'], '.2%')}"
            f"{_interval(guard.get('top1_agreement_ci95'), '.1%')} on {guard.get('images', '?')} held-out images: "
            f"{guard.get('verdict', '?')}{settle}"
        )
    return "not measured on real images: pass --calib DIR or --val DIR (synthetic inputs only show that it runs)"


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
    line = (
        f"{pruning.get('mode', '?')} {_number(pruning.get('ratio'), '.0%')} of channels, "
        f"{_number(pruning.get('macs_removed'), '.0%')} fewer MACs{sparse}"
    )
    accuracy = pruning.get("accuracy")
    drop = accuracy.get("drop_vs_original") if isinstance(accuracy, dict) else None
    if isinstance(drop, dict) and isinstance(drop.get("ci95_pts"), list) and len(drop["ci95_pts"]) == 2:
        line += (
            f"; top-1 drop vs the original {_number(drop.get('drop_pts'), '.2f')} pts (95 % interval "
            f"{_number(drop['ci95_pts'][0], '.2f')} to {_number(drop['ci95_pts'][1], '.2f')}, "
            f"{drop.get('images', '?')} images)"
        )
    return line


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


def _interval(values: Any, form: str) -> str:
    if isinstance(values, list) and len(values) == 2:
        return f" (95 % interval {_number(values[0], form)}–{_number(values[1], form)})"
    return ""


_JUDGED_ON = {"confirmation": " not used to choose this build"}  # the ladder judges its choice apart


def guard_rows(manifest: Manifest) -> dict[str, str]:
    """The accuracy guard's figures for the shipped build, and every build compile tried (its ladder)."""
    rows = {}
    guard = manifest.section("quantization").get("guard")
    if isinstance(guard, dict):
        if isinstance(guard.get("top1_agreement"), (int, float)):
            rows["accuracy guard"] = (
                f"{guard.get('verdict', '?')}: top-1 agreement with FP32 {_number(guard['top1_agreement'], '.2%')}"
                f"{_interval(guard.get('top1_agreement_ci95'), '.1%')} on {guard.get('images', '?')} held-out images"
                f"{_JUDGED_ON.get(guard.get('judged_on'), '')} (floor {_number(guard.get('min_agreement'), '.2%')}), "
                "top-5 overlap "
                f"{_number(guard.get('top5_overlap'), '.1%')}, relative logit error "
                f"{_number(guard.get('relative_logit_error'), '.3f')}"
            )
        else:
            rows["accuracy guard"] = f"not run: {guard.get('held_out_from', 'no held-out images')}"
    selection = manifest.section("selection")
    rungs = selection.get("rungs")
    if isinstance(rungs, list) and rungs:
        tried = []
        for index, rung in enumerate(rungs):
            if not isinstance(rung, dict):
                continue
            figures = rung.get("guard", {}).get("top1_agreement") if isinstance(rung.get("guard"), dict) else None
            figures = rung.get("top1_agreement") if figures is None else figures
            speed = f", p50 {_number(rung['p50_ms'], '.2f')} ms" if rung.get("p50_ms") is not None else ""
            chosen = " (chosen)" if index == selection.get("chosen") else ""
            tried.append(
                f"{rung.get('setting', rung.get('backend', '?'))}: agreement {_number(figures, '.2%')}{speed}, "
                f"{rung.get('verdict', '?')}{chosen}"
            )
        rows["builds tried"] = " | ".join(tried)
    return rows


def _fast_decode_row(manifest: Manifest) -> dict[str, str]:
    check = manifest.section("preprocessing_check")
    if not check:
        return {}
    if not check.get("images"):
        return {"fast decode": str(check.get("note", "not measured"))}
    return {
        "fast decode": f"top-1 agreement with the exact decode {_number(check.get('top1_agreement_with_exact'), '.2%')}"
        f"{_interval(check.get('top1_agreement_ci95'), '.1%')} on {check.get('images')} images "
        f"({check.get('jpeg_dct_scaled', '?')} DCT-scaled)"
    }


def _normalisation_row(manifest: Manifest) -> dict[str, str]:
    check = manifest.section("normalisation_check")
    if not check:
        return {}
    return {
        "pixels in": f"the model normalises uint8 NHWC pixels itself; top-1 agreement with float input "
        f"{_number(check.get('top1_agreement_with_float_input'), '.2%')}"
        f"{_interval(check.get('top1_agreement_ci95'), '.1%')} on {check.get('images')} images, max abs diff "
        f"{_number(check.get('max_abs_diff'), '.1e')}"
    }


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
        "model": f"{model.get('arch', '?')} ({model.get('arch_source', 'not recorded')})"
        if model.get("arch")
        else str(model.get("architecture", "?")),
        "classes": f"{len(classes)}: {', '.join(classes[:8])}{' …' if len(classes) > 8 else ''}",
        "transform_input": "n/a (only GoogLeNet and Inception v3 have it)"
        if manifest.transform_input is None
        else f"{manifest.transform_input} ({model.get('transform_input_source', 'n/a')})",
        "input": f"{manifest.input.name} {manifest.input.shape}",
        "output": f"{manifest.section('output').get('name', '?')} ({manifest.output_kind})",
        "preprocessing": ", ".join(f"{k}={v}" for k, v in spec.items()),
        "vs FP32": accuracy_line(manifest),
        **_fast_decode_row(manifest),
        **_normalisation_row(manifest),
        "pruning": pruning_line(manifest.section("pruning")) or "none",
        **_accuracy_rows(manifest),
        **guard_rows(manifest),
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
