"""The one wrapper of cuda-python (`cuda.bindings`): its driver, runtime and NVRTC modules and one error type.

Every CUDA call in edgekit goes through `check`, so a failing call raises `CudaError` naming the call.
A CUDA failure is a device problem or a bug in edgekit, never a mistake in the user's input: it keeps
its traceback (exit 1). Only a missing cuda-python is the user's to fix (EdgekitError, with the command).
"""

from __future__ import annotations

from typing import Any

from edgekit.core.errors import EdgekitError

INSTALL_HINT = "pip install cuda-python (cuda-bindings; for NVRTC also nvidia-cuda-nvrtc)"


class CudaError(RuntimeError):
    """A CUDA driver, runtime or NVRTC call failed."""


def _missing(exc: ImportError) -> EdgekitError:
    return EdgekitError(f"cuda-python is not installed ({INSTALL_HINT})")


def driver() -> Any:
    try:
        from cuda.bindings import driver as module
    except ImportError as exc:
        raise _missing(exc) from exc
    return module


def runtime() -> Any:
    try:
        from cuda.bindings import runtime as module
    except ImportError as exc:
        raise _missing(exc) from exc
    return module


def nvrtc() -> Any:
    try:
        from cuda.bindings import nvrtc as module
    except ImportError as exc:
        raise _missing(exc) from exc
    return module


def check(result: Any, what: str = "CUDA call") -> tuple[Any, ...]:
    """cuda-python returns (status, *values): the values, or CudaError naming the call and the status.

    Success is 0 for all three APIs (CUDA_SUCCESS, cudaSuccess, NVRTC_SUCCESS).
    """
    status, *values = result if isinstance(result, tuple) else (result,)
    if getattr(status, "value", status) != 0:
        raise CudaError(f"{what} failed: {getattr(status, 'name', status)}")
    return tuple(values)


def value(result: Any, what: str = "CUDA call") -> Any:
    """The value of a call that returns one (a tuple for several, () for none)."""
    values = check(result, what)
    return values[0] if len(values) == 1 else values
