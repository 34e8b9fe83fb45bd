"""`edgekit prune`: load, prune (optimize/prune.py), write the pruned checkpoint; and the latency probe pruning
to a latency uses: the target's FP32 backend, timed by the one protocol, only where this host is the device."""

from __future__ import annotations

import dataclasses
import datetime
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from edgekit.backends.base import ConvertRequest, ModelFiles
from edgekit.backends.converters import choose_converter
from edgekit.core.progress import QUIET, Progress
from edgekit.core.threads import resolve_threads
from edgekit.core.versions import EDGEKIT_VERSION
from edgekit.data.preprocess import PreprocessSpec
from edgekit.export.onnx_export import export_onnx
from edgekit.measure.host import host_problem, resolve_target
from edgekit.measure.latency import p50_ms
from edgekit.model.architecture import CHANNEL_PLAN_KEY, channel_plan
from edgekit.model.checkpoint import load_checkpoint, save_checkpoint
from edgekit.model.families import check_input_size
from edgekit.optimize.prune import (
    LatencyProbe,
    PruneData,
    PruneOutcome,
    check_accuracy_drop,
    load_prune_data,
    prune_module,
)
from edgekit.optimize.prune_config import PruneConfig, PruneSettings, validate
from edgekit.runtime.model import Runner
from edgekit.targets import Target

if TYPE_CHECKING:
    from edgekit.optimize.prune_search import SearchState


def fp32_latency_meter(target: Target, crop: int, threads: int, work: Path) -> LatencyProbe:
    """FP32 batch-1 p50 of the target's own FP32 backend, where this host is the target's device; else only
    the ONNX size (MACs are the proxy)."""
    converter = choose_converter(target, "fp32", None)
    problem = host_problem(target, converter.backend)

    def p50_and_size(module: nn.Module) -> tuple[float | None, int]:
        with tempfile.TemporaryDirectory(dir=work) as scratch:
            onnx_path = Path(scratch) / "candidate.onnx"
            export_onnx(module, onnx_path, crop, target.onnx_opset)
            size = onnx_path.stat().st_size
            if problem is not None:
                return None, size
            converted = Path(scratch) / "converted"
            converted.mkdir()
            model_file, _ = converter.convert(onnx_path, converted, ConvertRequest("fp32"))
            files = ModelFiles.from_directory(converted, model_file, converter.backend)
            runner = Runner(converter.backend, files, threads, None)
            return p50_ms(runner.run, crop), size

    how = (
        f"FP32 batch 1 p50 on {converter.backend.name}, measured on this host"
        if problem is None
        else f"not measured: {target.name} latency needs the device ({problem}); MACs are the proxy"
    )
    return LatencyProbe(p50_and_size, how)


def with_search(config: PruneConfig) -> PruneConfig:
    """`--max-accuracy-drop P` with nothing else to prune by: the budget decides the ratio (a search)."""
    settings = config.settings
    if config.max_accuracy_drop is not None and settings.mode == "none" and settings.sparsity is None:
        return dataclasses.replace(
            config, settings=dataclasses.replace(settings, search_drop_pts=config.max_accuracy_drop)
        )
    return config


def prune_or_search(
    module: nn.Module,
    settings: PruneSettings,
    spec: PreprocessSpec,
    data: PruneData,
    latency: LatencyProbe,
    model_sha256: str,
    out: Path,
    progress: Progress,
) -> tuple[PruneOutcome, SearchState | None]:
    """Prune by the settings, or search the ratio for the budget (`settings.mode == "search"`), keeping the
    trained candidates beside `out` until the caller has written its result and removes the state."""
    if settings.mode != "search":
        return prune_module(module, settings, spec, data, latency, progress), None
    from edgekit.optimize.prune_search import SearchState, search_identity, search_ratio

    state = SearchState(
        out.parent / f".{out.name}.prune-search", search_identity(model_sha256, settings, data, spec), progress
    )
    progress.note(
        f"searching the pruning ratio for a top-1 drop of at most {settings.search_drop_pts:g} pts; trained candidates "
        f"are kept in {state.directory} until the search ends, so an interrupted search resumes from them"
    )
    outcome, record = search_ratio(module, settings, spec, data, latency, state, progress)
    outcome.report.update(mode="search", search=record)
    return outcome, state


# Makes the probe that times candidates elsewhere (on the boards, `edgekit prune --device`): (target, crop,
# scratch folder) → probe.
ProbeFactory = Callable[[Target, int, Path], LatencyProbe]


def run_prune(
    config: PruneConfig, progress: Progress = QUIET, latency_probe: ProbeFactory | None = None
) -> dict[str, Any]:
    """`edgekit prune`: prune a checkpoint and write the pruned one (architecture stored as data). Latency is
    measured on this host where it is the target's device, or by `latency_probe` where one is given."""
    config = with_search(dataclasses.replace(config, target=resolve_target(config.target)))
    assert isinstance(config.target, Target)
    validate(config, choose_converter(config.target, "fp32", None).backend, measured_elsewhere=bool(latency_probe))
    names = list(config.class_names) if config.class_names else None
    loaded = load_checkpoint(config.model, trust_pickle=config.trust_pickle, class_names=names, arch=config.arch)
    spec = loaded.preprocessing.with_overrides(resize=config.resize, crop=config.crop)
    check_input_size(loaded.module, spec.crop, loaded.arch)
    data = load_prune_data(config.settings, config.val, loaded.class_names, loaded.class_names_source, progress)
    threads = resolve_threads(config.threads if config.threads is not None else config.target.threads)
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory(prefix=f".{config.out.name}.work-", dir=config.out.parent) as work:
        if latency_probe is not None:
            latency = latency_probe(config.target, spec.crop, Path(work))
        else:
            latency = fp32_latency_meter(config.target, spec.crop, threads, Path(work))
        outcome, state = prune_or_search(
            loaded.module, config.settings, spec, data, latency, loaded.sha256, config.out, progress
        )
    check_accuracy_drop(outcome.report, config.max_accuracy_drop)
    report = {
        **outcome.report,
        # Pruning a pruned checkpoint keeps the original as the source: reports group variants by it.
        "source": (loaded.pruning or {}).get("source")
        or {"path": str(config.model.resolve()), "sha256": loaded.sha256},
        "target": config.target.name,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "edgekit_version": EDGEKIT_VERSION,
    }
    save_checkpoint(
        {
            "model_state_dict": outcome.module.state_dict(),
            "arch": loaded.arch,
            "classes": list(loaded.class_names),
            "transform_input": loaded.transform_input,
            "preprocessing": spec.to_dict(),
            CHANNEL_PLAN_KEY: channel_plan(outcome.module),
            "pruning": report,
            "edgekit_version": EDGEKIT_VERSION,
        },
        config.out,
    )
    if state is not None:
        state.remove()  # the search is done: its candidates are no longer needed
    return {"checkpoint": str(config.out), **report}
