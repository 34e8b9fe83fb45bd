"""The one wrapper of cuda-python (`cuda.bindings`): its driver, runtime and NVRTC modules and one error type.

cuda-python 12.6+ lays its modules out as `cuda.bindings.{driver, runtime, nvrtc}`; 11.8 (the release for
CUDA 11.x: JetPack 5's CUDA 11.4, built on the board for its Python 3.8) as `cuda.{cuda, cudart, nvrtc}`
with the same functions and return convention. Both are accepted, so one binding serves JetPack 5-7 and
desktops; JetPack 4.6 (CUDA 10.2, which no cuda-python supports) builds with trtexec instead.

Every CUDA call in edgekit goes through `check`, so a failing call raises `CudaError` naming the call.
A CUDA failure is a device problem or a bug in edgekit, never a mistake in the user's input: it keeps
its traceback (exit 1). Only a missing cuda-python is the user's to fix (EdgekitError, with the command).
"""

from __future__ import annotations

from typing import Any

from edgekit.core.errors import EdgekitError

INSTALL_HINT = (
    "pip install cuda-python (cuda-bindings; for NVRTC also nvidia-cuda-nvrtc); JetPack 5: cuda-python 11.8 "
    "built on the board"
)


class CudaError(RuntimeError):
    """A CUDA driver, runtime or NVRTC call failed."""


def _missing(exc: ImportError) -> EdgekitError:
    return EdgekitError(f"cuda-python is not installed ({INSTALL_HINT})")


def _module(name: str, legacy: str) -> Any:
    """`cuda.bindings.<name>` (cuda-python 12.6+), else `cuda.<legacy>` (cuda-python 11.8)."""
    import importlib

    try:
        return importlib.import_module(f"cuda.bindings.{name}")
    except ImportError as exc:
        try:
            return importlib.import_module(f"cuda.{legacy}")
        except ImportError:
            raise _missing(exc) from exc


def driver() -> Any:
    return _module("driver", "cuda")


def runtime() -> Any:
    return _module("runtime", "cudart")


def nvrtc() -> Any:
    return _module("nvrtc", "nvrtc")


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
