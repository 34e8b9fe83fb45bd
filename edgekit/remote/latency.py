"""Latency measured on the boards, for the decisions that trade accuracy or channels for speed:
`compile --precision auto --device` and `prune --target-latency --device`.

A bundle is timed by `edgekit bench` on each device (batch 1, the one latency protocol), the devices in
parallel. A bundle whose model the device builds itself (TensorRT: the engine belongs to the board's GPU
and TensorRT) is built there first, on a copy here, by `edgekit build --device`'s own path.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from torch import nn

from edgekit.backends.converters import choose_converter
from edgekit.backends.registry import get_backend
from edgekit.core.errors import EdgekitError
from edgekit.core.progress import QUIET
from edgekit.export.onnx_export import export_onnx
from edgekit.optimize.prune import LatencyProbe
from edgekit.pipeline.bench import BenchConfig
from edgekit.pipeline.compile import compile_bundle
from edgekit.pipeline.compile_config import CompileConfig
from edgekit.remote.bench import prefixed, remote_bench
from edgekit.remote.build import build_on_remote
from edgekit.remote.devices import Device
from edgekit.remote.session import DeviceSession
from edgekit.runtime.bundle import read_manifest
from edgekit.targets import Target


def device_p50_ms(session: DeviceSession, bundle: Path) -> float:
    """Batch-1 p50 of `bundle` on the session's device (its engine built there first where it needs one)."""
    manifest = read_manifest(bundle, verify=False)  # only its backend is read here; the device verifies what it loads
    with tempfile.TemporaryDirectory(prefix=f".{bundle.name}.timing-", dir=bundle.parent) as work:
        if get_backend(manifest.backend).capabilities.portable_onnx:
            copy = Path(work) / "bundle"
            shutil.copytree(bundle, copy)
            build_on_remote(session.device, copy, {}, session=session)
            bundle = copy
        config = BenchConfig(bundle, batch_sizes=(1,), threads=session.device.threads)  # the one protocol
        results = remote_bench(session, config)
    if not isinstance(results.get("p50_ms"), (int, float)):
        raise EdgekitError(f"`edgekit bench` on {session.device.name} reported no batch-1 latency")
    return float(results["p50_ms"])


class DeviceTimer:
    """Times bundles on every device, in parallel. A device that fails is reported (`failures`) and left
    out of later timings; the others go on. No device left is an error."""

    def __init__(self, devices: Sequence[Device], on_line: Callable[[str], None] | None = None) -> None:
        self.sessions = [DeviceSession(device, prefixed(device, on_line)) for device in devices]
        self.failures: dict[str, str] = {}
        self.on_line = on_line

    @property
    def names(self) -> list[str]:
        return [s.device.name for s in self.sessions]

    def __call__(self, bundle: Path) -> dict[str, float]:
        """p50 ms by device name, for the devices still answering."""
        live = [s for s in self.sessions if s.device.name not in self.failures]

        def one(session: DeviceSession) -> tuple[str, float | None]:
            try:
                return session.device.name, device_p50_ms(session, bundle)
            except EdgekitError as exc:
                self.failures[session.device.name] = str(exc)
                if self.on_line is not None:
                    self.on_line(f"warning: {session.device.name} left out: {exc}")
                return session.device.name, None

        with ThreadPoolExecutor(max_workers=max(1, len(live))) as pool:
            timed = {name: p50 for name, p50 in pool.map(one, live) if p50 is not None}
        if not timed:
            problems = "; ".join(f"{name}: {problem}" for name, problem in self.failures.items())
            raise EdgekitError(f"no device could time {bundle.name}: {problems}")
        return timed


def device_latency_probe(timer: DeviceTimer, target: Target, crop: int, work: Path) -> LatencyProbe:
    """Pruning to a latency on the boards: each candidate becomes the target's FP32 bundle (as `edgekit
    compile` makes it) and is timed on every device; the slowest board's p50 is the candidate's."""

    backend = choose_converter(target, "fp32", None).backend.name  # the FP32 bundle's, as compile's default

    def p50_and_size(module: nn.Module) -> tuple[float | None, int]:
        with tempfile.TemporaryDirectory(dir=work) as scratch:
            onnx_path = Path(scratch) / "candidate.onnx"
            export_onnx(module, onnx_path, crop, target.onnx_opset)
            size = onnx_path.stat().st_size
            bundle = Path(scratch) / "bundle"
            config = CompileConfig(model=onnx_path, target=target, out=bundle, precision="fp32", backend=backend)
            compile_bundle(config, QUIET)
            return max(timer(bundle).values()), size

    where = ", ".join(timer.names)
    return LatencyProbe(p50_and_size, f"FP32 batch 1 p50 for {target.name}, measured on {where} (the slowest decides)")
