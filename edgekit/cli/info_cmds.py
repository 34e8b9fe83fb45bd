"""`edgekit inspect` and `edgekit targets`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from edgekit.cli.options import json_option, print_json, trust_pickle_option


def _describe(path: Path, trust_pickle: bool) -> dict[str, Any]:
    if path.is_dir():
        from edgekit.runtime.bundle import read_manifest

        manifest = read_manifest(path, verify=True)
        return {"kind": "bundle", "path": str(path), "verified": True, **manifest}
    if path.suffix.lower() == ".onnx":
        from edgekit.export.onnx_file import inspect_onnx

        return {"kind": "onnx", "path": str(path), **inspect_onnx(path).to_dict()}
    from edgekit.model.checkpoint import load_checkpoint

    loaded = load_checkpoint(path, trust_pickle=trust_pickle)
    return {
        "kind": "checkpoint",
        "path": str(path),
        "sha256": loaded.sha256,
        "form": loaded.checkpoint_form,
        "num_classes": loaded.num_classes,
        "classes": list(loaded.class_names),
        "classes_source": loaded.class_names_source,
        "transform_input": loaded.transform_input,
        "transform_input_source": loaded.transform_input_source,
        "dropped_aux_keys": loaded.dropped_aux_keys,
        "preprocessing": loaded.preprocessing.to_dict() if loaded.preprocessing else None,
        "parameters": sum(p.numel() for p in loaded.module.parameters()),
        "pruning": _pruning_line(loaded.pruning),
    }


def _tensorrt_rows(info: dict[str, Any]) -> dict[str, str]:
    if "tensorrt" not in info:
        return {}
    engines = info["tensorrt"]["engines"]
    rows = {"preprocessing kernel": info["kernels"]["summary"]}
    if not engines:
        rows["TensorRT engines"] = f"none yet: run `edgekit build {info['path']}` on the device"
    for index, engine in enumerate(engines):
        placement = engine["placement"]
        where = placement["device"] + (f" core {placement['dla_core']}" if placement["device"] == "DLA" else "")
        rows[f"engine {index + 1}"] = (
            f"{engine['file']}: TensorRT {engine['tensorrt_version']}, {engine['device']['name']} "
            f"(sm_{engine['device']['sm']}), {engine['precision']}, {where}, built {engine['built']}"
        )
    return rows


def _pruning_line(pruning: dict[str, Any] | None) -> str | None:
    if not pruning:
        return None
    sparse = ", 2:4 sparse" if pruning.get("sparsity") else ""
    return f"{pruning['mode']} {pruning['ratio']:.0%} of channels, {pruning['macs_removed']:.0%} fewer MACs{sparse}"


@click.command("inspect")
@click.argument("path", type=click.Path(path_type=Path, exists=True))
@trust_pickle_option
@json_option
def inspect_command(path: Path, trust_pickle: bool, as_json: bool) -> None:
    """Describe a bundle (and verify its hashes), a checkpoint or an ONNX file."""
    info = _describe(path, trust_pickle)
    if as_json:
        print_json(info)
        return
    if info["kind"] == "bundle":
        model, source, classes = info["model"], info["source"], info["classes"]
        rows = {
            "bundle": info["path"],
            "files": "verified (sha256 matches manifest)",
            "source": f"{source['file_name']} ({source['format']}, sha256 {source['sha256'][:12]}…)",
            "target": info["target"]["name"],
            "backend": info["backend"],
            "precision": info["precision"],
            "classes": f"{len(classes)}: {', '.join(classes[:8])}{' …' if len(classes) > 8 else ''}",
            "transform_input": f"{model.get('transform_input')} ({model.get('transform_input_source', 'n/a')})",
            "input": f"{info['input']['name']} {info['input']['shape']}",
            "output": f"{info['output']['name']} ({info['output']['kind']})",
            "preprocessing": ", ".join(f"{k}={v}" for k, v in info["preprocessing"].items()),
            "parity": f"top-1 agreement {info['parity']['top1_agreement']:.2%}, max abs diff "
            f"{info['parity']['max_abs_diff']:.2e} vs {info['parity']['reference']} on {info['parity']['inputs']}",
            "pruning": _pruning_line(info.get("pruning")) or "none",
            "2:4 sparsity": "yes (pattern recorded for TensorRT on Ampere+)" if info.get("sparsity") else "no",
            **_tensorrt_rows(info),
            "edgekit": info["edgekit_version"],
        }
    else:
        rows = {k: v for k, v in info.items() if k not in ("classes",)}
    width = max(len(k) for k in rows)
    for key, value in rows.items():
        click.echo(f"{key:<{width}}  {value}")


@click.command("targets")
@json_option
def targets_command(as_json: bool) -> None:
    """List the device targets and which of their backends can run on this machine."""
    from edgekit.backends.registry import usable_here
    from edgekit.measure.host import host_target_name
    from edgekit.targets import list_targets

    targets = list_targets()
    host = host_target_name()
    rows = []
    for target in targets:
        available = {precision: usable_here(names) for precision, names in target.backends.items()}
        rows.append({**target.to_dict(), "host": target.name == host, "backends_available_here": available})
    if as_json:
        print_json(rows)
        return
    width = max(len(row["name"]) for row in rows)
    for row in rows:
        marker = "*" if row["host"] else " "
        here = "; ".join(f"{p}: {', '.join(names) or 'none'}" for p, names in row["backends_available_here"].items())
        click.echo(f"{marker} {row['name']:<{width}}  {row['description']}  [available here: {here}]")
    click.echo("* = this host's default target; + = compiles here, the engine is built on the device (`edgekit build`)")
