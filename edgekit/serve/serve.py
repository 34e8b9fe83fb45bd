"""`edgekit serve BUNDLE`: the bundle behind a real Triton Inference Server on this machine, over HTTP and gRPC,
with Triton's dynamic batcher, health (`/v2/health/ready`) and Prometheus metrics (`/metrics`).

The server runs edgekit's Python-backend model (serve/triton_python.py) on a repository written to a temporary
folder, exactly as `edgekit export triton` writes it, so a client sees the same model either way. Clients send
encoded images (UINT8 `IMAGE`) and get class probabilities (`PROBABILITIES`, labelled: Triton's
classification extension returns the top k as `score:index:label`).
"""

from __future__ import annotations

import contextlib
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from edgekit.core.errors import EdgekitError
from edgekit.serve.triton_python import IMAGE_INPUT, PROBABILITIES_OUTPUT
from edgekit.serve.triton_repository import TritonSettings, serving_repository
from edgekit.serve.tritonserver import Endpoints, run_server


class _Stop(Exception):
    """SIGTERM, raised where the server is waited on, so the same clean shutdown runs as for Ctrl-C."""


@contextlib.contextmanager
def _sigterm_stops() -> Iterator[None]:
    def stop(signum: int, frame: FrameType | None) -> None:
        raise _Stop

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def serve(
    bundle: Path,
    endpoints: Endpoints,
    settings: TritonSettings,
    on_ready: Callable[[dict[str, Any]], None],
    startup_timeout_s: float = 300.0,
) -> str:
    """Serve until SIGINT or SIGTERM; returns how it ended ("stopped"). `on_ready` gets the endpoints and the
    model's name once the server answers its readiness check."""
    with tempfile.TemporaryDirectory(prefix="edgekit-serve-") as tmp:
        repo = Path(tmp) / "repository"
        repo.mkdir()
        name = serving_repository(bundle, repo, settings)
        with _sigterm_stops():
            try:
                with run_server(repo, endpoints, startup_timeout_s) as server:
                    on_ready(
                        {
                            "model": name,
                            "input": IMAGE_INPUT,
                            "output": PROBABILITIES_OUTPUT,
                            **server.endpoints.urls(),
                            "max_batch_size": settings.max_batch_size,
                            "pid": server.process.pid,
                        }
                    )
                    while server.process.poll() is None:
                        time.sleep(0.5)
                    raise EdgekitError(
                        f"tritonserver stopped on its own (exit {server.process.returncode}): {server.log_reason()}"
                    )
            except (KeyboardInterrupt, _Stop):
                return "stopped"
