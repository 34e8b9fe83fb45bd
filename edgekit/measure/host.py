"""Is this machine the target? The one place that decides whether a latency measured here stands for a
target's device, which target this machine is, and how a measurement's origin is labelled."""

from __future__ import annotations

import platform

from edgekit.backends.base import Backend
from edgekit.backends.registry import RUNTIMES
from edgekit.core.errors import EdgekitError
from edgekit.targets import Target, get_target, host_arch, list_targets


def host_problem(target: Target, backend: type[Backend]) -> str | None:
    """Why `backend` on this machine does not measure `target`'s device (short), or None when it does.

    A CPU target is this machine when the architecture matches (an arm-cpu latency is not measured on
    x86); a GPU target when the backend finds the target's own GPU here (its `host_problem` hook).
    """
    if target.kind not in backend.capabilities.devices:
        devices = "/".join(sorted(backend.capabilities.devices))
        return f"{backend.name} runs on the {devices}, the target on the {target.kind}"
    problem = backend.host_problem(target)  # the accelerator's own check says most (TensorRT missing, wrong GPU)
    if problem is None and target.arch != host_arch():
        problem = f"this host is {platform.machine().lower()}, the {target.name} device is {target.arch}"
    return problem


def measured_on(target: Target, backend: type[Backend]) -> str:
    """Honest label: a number measured on this host stands for a device only when the host is that device."""
    if host_problem(target, backend) is None:
        device = backend.device_description()
        return (
            f"this host's {device}, the {target.name} target's GPU" if device else "this host (the target's CPU kind)"
        )
    return f"this host ({platform.machine()}), not on the {target.name} device: latency there will differ"


def host_target_name() -> str:
    """The target that describes the machine edgekit runs on.

    The target of this machine's accelerator where a backend finds one (TensorRT and a GPU some target
    describes); else the CPU target of this machine's architecture.
    """
    targets = list_targets()
    for backend in RUNTIMES.values():
        found = backend.host_target(targets)
        if found is not None:
            return found
    arch = host_arch()
    if arch == "x86_64":
        return "x86-cpu"
    if arch == "aarch64":
        return "arm-cpu"
    raise EdgekitError(
        f"no default target for a {platform.machine().lower()} host; pass --target (see `edgekit targets`)"
    )


def resolve_target(target: Target | str | None) -> Target:
    """A Target as given, by name or TOML path, or this host's when None: the library's one default."""
    if isinstance(target, Target):
        return target
    return get_target(target or host_target_name())
