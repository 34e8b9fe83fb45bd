"""`edgekit bench --device NAME` and `edgekit sweep --device ...`: the bundle is benchmarked on the board,
and the results come back into the workstation's files, labelled with the device they were measured on."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from edgekit.backends.registry import run_option_flags
from edgekit.core.errors import EdgekitError
from edgekit.core.json_lines import parse_one
from edgekit.measure.results import write_results
from edgekit.pipeline.bench import BenchConfig
from edgekit.remote.devices import Device
from edgekit.remote.session import DeviceSession


def check_remote_bench(config: BenchConfig) -> None:
    """What cannot run on a device, refused before anything is copied."""
    if config.reference is not None:
        raise EdgekitError(
            "--reference runs PyTorch, which a device does not have: bench the reference on the workstation "
            "(`edgekit bench BUNDLE --reference MODEL`) and the bundle with --device"
        )
    if config.class_names is not None:
        raise EdgekitError("--classes is not passed to a device: compile the bundle with --classes instead")


def bench_on_device(
    device: Device,
    config: BenchConfig,
    on_line: Callable[[str], None] | None = None,
    session: DeviceSession | None = None,
) -> dict[str, Any]:
    """Copy the bundle (and --val / --images) to the device, run `edgekit bench` there, write its results
    into config.results_dir() here with the device recorded; returns them. A `session` already checked is
    reused (a sweep benches many bundles on one device)."""
    check_remote_bench(config)
    session = session or DeviceSession(device, on_line)
    results = remote_bench(session, config)
    write_results(results, config.results_dir())
    return results


def remote_bench(session: DeviceSession, config: BenchConfig) -> dict[str, Any]:
    """`edgekit bench` on the device, for the bundle and images here; its results, labelled with the device."""
    device = session.device
    session.check_version()
    bundle = session.push(config.bundle, "bundles")
    # The FP32 reference is the workstation's (a device has no torch): the device times the bundle only.
    args = ["bench", bundle, "--json", "--no-reference", "--batch-sizes", ",".join(map(str, config.batch_sizes)),
            "--warmup", str(config.warmup), "--iterations", str(config.iterations)]  # fmt: skip
    threads = config.threads if config.threads is not None else device.threads
    if threads is not None:
        args += ["--threads", str(threads)]
    if config.val is not None:
        args += ["--val", session.push(config.val, "images")]
    if config.images is not None:
        args += ["--images", session.push(config.images, "images")]
    if config.max_images is not None:
        args += ["--max-images", str(config.max_images)]
    if config.throughput:
        args.append("--throughput")
    args += run_option_flags(config.run_options or {})
    output = session.run_edgekit(args, out_folder=True, exclusive=True)
    try:
        results = parse_one(output)
    except ValueError:
        raise EdgekitError(
            f"`edgekit bench` on {device.name} printed no JSON results; run it there to see why"
        ) from None
    results["device"] = {"name": device.name, "url": device.url, "bundle_path": bundle, "facts": device.facts}
    results["measured_on"] = f"device {device.name} ({device.url}): {results.get('measured_on', '?')}"
    results["bundle"]["path"] = str(config.bundle)
    return results


def bench_on_devices(
    devices: Sequence[Device], configs: Sequence[BenchConfig], on_line: Callable[[str], None] | None = None
) -> tuple[list[Path], dict[str, str]]:
    """Every config on every device, the devices in parallel (each one's benches in turn, so they do not
    disturb each other). A device that fails is reported; the others finish. (results files, failures)."""

    def one_device(device: Device) -> tuple[list[Path], str | None]:
        done = []
        session = DeviceSession(device, prefixed(device, on_line))
        try:
            for config in configs:
                out = config.results_dir() / device.name
                bench_on_device(device, dataclasses.replace(config, out=out), session=session)
                done.append(out / "bench.json")
        except EdgekitError as exc:
            return done, str(exc)
        return done, None

    with ThreadPoolExecutor(max_workers=max(1, len(devices))) as pool:
        outcomes = list(pool.map(one_device, devices))
    results = [path for done, _ in outcomes for path in done]
    failures = {device.name: problem for device, (_, problem) in zip(devices, outcomes) if problem}
    return results, failures


def prefixed(device: Device, on_line: Callable[[str], None] | None) -> Callable[[str], None] | None:
    if on_line is None:
        return None
    return lambda line: on_line(f"[{device.name}] {line}")
