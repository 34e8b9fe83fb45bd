"""`edgekit inspect` and `edgekit targets`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from edgekit.cli.options import arch_option, json_option, print_json, trust_pickle_option


def _describe(path: Path, trust_pickle: bool, arch: str | None = None) -> tuple[dict[str, Any], dict[str, str] | None]:
    """(what --json prints, the rows printed otherwise; None: print the JSON's keys)."""
    if path.is_dir():
        from edgekit.runtime.bundle import read_manifest_bytes
        from edgekit.runtime.describe import describe_bundle
        from edgekit.runtime.trust import describe

        raw, manifest = read_manifest_bytes(path, verify=True)
        signature = describe(path, raw, dict(manifest.files))
        info = {"kind": "bundle", "path": str(path), "verified": True, "signature": signature, **manifest.to_dict()}
        return info, {**describe_bundle(path, manifest), "signature": signature}
    from edgekit.core.install import require_workstation

    if path.suffix.lower() == ".onnx":
        require_workstation("inspect MODEL.onnx", ("onnx",))
        from edgekit.export.onnx_file import inspect_onnx

        return {"kind": "onnx", "path": str(path), **inspect_onnx(path).to_dict()}, None
    require_workstation("inspect CHECKPOINT", ("torch", "torchvision"))
    from edgekit.model.checkpoint import load_checkpoint
    from edgekit.runtime.describe import pruning_line

    loaded = load_checkpoint(path, trust_pickle=trust_pickle, arch=arch)
    info = {
        "kind": "checkpoint",
        "path": str(path),
        "sha256": loaded.sha256,
        "form": loaded.checkpoint_form,
        "arch": loaded.arch,
        "arch_source": loaded.arch_source,
        "num_classes": loaded.num_classes,
        "classes": list(loaded.class_names),
        "classes_source": loaded.class_names_source,
        "transform_input": loaded.transform_input,
        "transform_input_source": loaded.transform_input_source,
        "dropped_aux_keys": loaded.dropped_aux_keys,
        "preprocessing": loaded.preprocessing.to_dict(),
        "parameters": sum(p.numel() for p in loaded.module.parameters()),
        "pruning": pruning_line(loaded.pruning or {}),
    }
    return info, None


def _describe_in_child(path: Path, trust_pickle: bool, arch: str | None) -> dict[str, Any]:
    from edgekit.core.json_lines import parse_one
    from edgekit.runtime.isolate import run_in_child

    args = ["inspect", str(path), "--json", *(["--arch", arch] if arch else []), *(["--trust-pickle"] * trust_pickle)]
    return parse_one(run_in_child("edgekit.cli.main", args, str(path)))


@click.command("inspect")
@click.argument("path", type=click.Path(path_type=Path, exists=True))
@arch_option
@trust_pickle_option
@json_option
def inspect_command(path: Path, arch: str | None, trust_pickle: bool, as_json: bool) -> None:
    """Describe a bundle (and verify its hashes), a checkpoint or an ONNX file.

    A model file is parsed in a child process first (EDGEKIT_ISOLATE_PARSING=0 turns that off), so a parser
    that crashes on a hostile file ends with an error naming it.
    """
    from edgekit.runtime.isolate import isolation_enabled

    if path.is_file() and isolation_enabled():
        info, rows = _describe_in_child(path, trust_pickle, arch), None
    else:
        info, rows = _describe(path, trust_pickle, arch)
    if as_json:
        print_json(info)
        return
    if rows is None:
        rows = {k: str(v) for k, v in info.items() if k not in ("classes",)}
    width = max(len(k) for k in rows)
    for key, value in rows.items():
        click.echo(f"{key:<{width}}  {value}")


@click.command("targets")
@json_option
def targets_command(as_json: bool) -> None:
    """List the device targets and which of their backends can run on this machine."""
    from edgekit.backends.registry import RUNTIMES, usable_here
    from edgekit.measure.host import host_target_name
    from edgekit.targets import list_targets

    targets = list_targets()
    host = host_target_name()
    rows = []
    for target in targets:
        available = {precision: usable_here(names) for precision, names in target.backends.items()}
        backends = {name for names in target.backends.values() for name in names}
        notes = [n for n in (RUNTIMES[b].target_note(target) for b in sorted(backends) if b in RUNTIMES) if n]
        row = {**target.to_dict(), "host": target.name == host, "backends_available_here": available}
        rows.append({**row, "device_side": "; ".join(notes) or None})
    if as_json:
        print_json({"targets": rows})
        return
    width = max(len(row["name"]) for row in rows)
    for row in rows:
        marker = "*" if row["host"] else " "
        here = "; ".join(f"{p}: {', '.join(names) or 'none'}" for p, names in row["backends_available_here"].items())
        click.echo(f"{marker} {row['name']:<{width}}  {row['description']}  [available here: {here}]")
        if row["device_side"]:
            click.echo(f"  {'':<{width}}  on the device: {row['device_side']}")
    click.echo("* = this host's default target; + = compiles here, the engine is built on the device (`edgekit build`)")
