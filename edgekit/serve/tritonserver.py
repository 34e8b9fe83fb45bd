"""Running a real `tritonserver` on this machine: the binary, Python backend and stubs PyTriton ships on PyPI
(`pip install --no-deps nvidia-pytriton`), on a model repository (an `edgekit export triton` one, or the one
`edgekit serve` writes).

Only PyTriton's files are used, not its Python model proxy: the proxy returns empty outputs under NumPy 2
(measured with 0.7.0, which pins numpy<2), while edgekit's own Python-backend model passes its tensors through
DLPack and works with either (serve/triton_python.py).

The server runs as a child that dies with this process (PR_SET_PDEATHSIG), so a killed `edgekit serve` leaves
no server behind; SIGINT/SIGTERM stop it cleanly (Triton's own shutdown, then SIGKILL after a grace period).
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

from edgekit.core.errors import EdgekitError

INSTALL_HINT = 'pip install --no-deps nvidia-pytriton==0.7.0 "tritonclient[grpc,http]"'
# On SIGTERM Triton waits for in-flight inferences, and counts an idle client's open connection as one, up to
# --exit-timeout-secs (default 30 s: measured, a stop with one idle HTTP and one gRPC client took 31.4 s).
EXIT_TIMEOUT_S = 5  # in-flight requests (≪ 1 s each) finish well within it
STOP_GRACE_S = 30.0  # then it is killed
_PR_SET_PDEATHSIG = 1


@dataclasses.dataclass(frozen=True)
class Endpoints:
    host: str = "127.0.0.1"  # where the server listens; 0.0.0.0 exposes it to the network
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002

    @classmethod
    def on_free_ports(cls, host: str = "127.0.0.1") -> Endpoints:
        """Three ports no one listens on now (for tests and benchmarks that run beside other servers)."""
        sockets = [socket.socket() for _ in range(3)]
        try:
            for probe in sockets:
                probe.bind((host, 0))
            return cls(host, *(probe.getsockname()[1] for probe in sockets))
        finally:
            for probe in sockets:
                probe.close()

    def urls(self) -> dict[str, str]:
        shown = "127.0.0.1" if self.host == "0.0.0.0" else self.host
        return {
            "http": f"http://{shown}:{self.http_port}",
            "grpc": f"{shown}:{self.grpc_port}",
            "metrics": f"http://{shown}:{self.metrics_port}/metrics",
        }


def _distribution() -> tuple[Path, Path, Path]:
    """PyTriton's tritonserver folder, its bundled libraries, and the Python backend stub for this Python.

    Found from the installed package's files, without importing it (its Python side needs packages
    edgekit does not), in the layout of PyTriton's wheels."""
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise EdgekitError(f"Triton Inference Server is not installed here ({INSTALL_HINT})")
    package = Path(next(iter(spec.submodule_search_locations)))
    server = package / "tritonserver"
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    stub = server / "python_backend_stubs" / version / "triton_python_backend_stub"
    libs = package.parent / "nvidia_pytriton.libs"
    if not (server / "bin" / "tritonserver").is_file() or not libs.is_dir():
        raise EdgekitError(
            f"PyTriton at {package} has no tritonserver binary or libraries; reinstall it ({INSTALL_HINT})"
        )
    if not stub.is_file():
        raise EdgekitError(
            f"PyTriton's tritonserver has no Python backend stub for Python {version}; run edgekit with a Python "
            "PyTriton supports (3.8-3.13)"
        )
    return server, libs, stub


def _prepare(workdir: Path) -> tuple[Path, dict[str, str]]:
    """A copy of the server with this Python's stub in its Python backend, and the environment it needs."""
    server, libs, stub = _distribution()
    target = workdir / "tritonserver"  # a copy: the stub must sit in the Python backend's own folder
    shutil.copytree(server, target, ignore=shutil.ignore_patterns("python_backend_stubs"))
    shutil.copy2(stub, target / "backends" / "python" / "triton_python_backend_stub")
    env = dict(os.environ)
    # The stub embeds libpython: it must be this interpreter's, whose standard library it will import
    # (a distribution's libpython of another patch release fails inside multiprocessing).
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (libdir, str(libs), env.get("LD_LIBRARY_PATH", "")) if p)
    # The stub imports edgekit and the bundle's runtime from this environment.
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    env["PATH"] = os.pathsep.join((str(Path(sys.executable).parent), env.get("PATH", "")))
    return target, env


def _check_ports(endpoints: Endpoints) -> None:
    """A port already taken is the user's to choose again: said before the server starts, in one line."""
    for option, port in (("--http-port", endpoints.http_port), ("--grpc-port", endpoints.grpc_port),
                         ("--metrics-port", endpoints.metrics_port)):  # fmt: skip
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind: TIME_WAIT is no clash
            try:
                probe.bind((endpoints.host, port))
            except OSError as exc:
                raise EdgekitError(
                    f"cannot listen on {endpoints.host}:{port} ({exc.strerror}); choose another {option}"
                ) from None


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _ready(endpoints: Endpoints) -> bool:
    url = f"{endpoints.urls()['http']}/v2/health/ready"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


class TritonServer:
    """A running tritonserver; `stop()` (or leaving the `run_server` block) shuts it down."""

    def __init__(self, process: subprocess.Popen[bytes], endpoints: Endpoints, log: Path) -> None:
        self.process = process
        self.endpoints = endpoints
        self.log = log

    def log_reason(self) -> str:
        """The server log's last error line, in one line (Triton prefixes errors with E and a timestamp)."""
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return "no log"
        errors = [line for line in lines if line.startswith("E") or "error" in line.lower()]
        last = (errors or lines or ["no log"])[-1]
        return " ".join(last.split())[:400]

    def stop(self) -> int | None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


@contextlib.contextmanager
def run_server(
    repository: Path,
    endpoints: Endpoints,
    startup_timeout_s: float = 300.0,
    log_verbose: int = 0,
    models: Sequence[str] = (),
) -> Iterator[TritonServer]:
    """Start tritonserver on `repository` and wait until it is ready; stop it when the block ends. `models`:
    load only these (Triton's explicit model control), else every model in the repository."""
    _check_ports(endpoints)
    with tempfile.TemporaryDirectory(prefix="edgekit-triton-") as tmp:
        workdir = Path(tmp)
        server_dir, env = _prepare(workdir)
        command = [
            str(server_dir / "bin" / "tritonserver"),
            f"--model-repository={repository}",
            f"--backend-directory={server_dir / 'backends'}",
            f"--cache-directory={server_dir / 'caches'}",
            f"--http-address={endpoints.host}",
            f"--http-port={endpoints.http_port}",
            f"--grpc-address={endpoints.host}",
            f"--grpc-port={endpoints.grpc_port}",
            f"--metrics-address={endpoints.host}",
            f"--metrics-port={endpoints.metrics_port}",
            "--allow-gpu-metrics=false",
            "--allow-cpu-metrics=true",
            "--exit-on-error=true",
            f"--exit-timeout-secs={EXIT_TIMEOUT_S}",
            "--strict-readiness=true",
            f"--log-verbose={log_verbose}",
        ]
        if models:
            command += ["--model-control-mode=explicit", *(f"--load-model={model}" for model in models)]
        log = workdir / "tritonserver.log"
        with open(log, "wb") as sink:
            process = subprocess.Popen(
                command, stdout=sink, stderr=subprocess.STDOUT, env=env, preexec_fn=_die_with_parent
            )
        server = TritonServer(process, endpoints, log)
        try:
            deadline = time.monotonic() + startup_timeout_s
            while not _ready(endpoints):
                if process.poll() is not None:
                    raise EdgekitError(
                        f"tritonserver exited ({process.returncode}) before it was ready: {server.log_reason()}"
                    )
                if time.monotonic() > deadline:
                    raise EdgekitError(
                        f"tritonserver was not ready after {startup_timeout_s:.0f} s: {server.log_reason()}"
                    )
                time.sleep(0.25)
            yield server
        finally:
            server.stop()
