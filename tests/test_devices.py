"""Devices over SSH, for real: an OpenSSH server on 127.0.0.1 (random port, throwaway host and user keys,
its own config) whose "device" is this machine with edgekit's device install. The workstation side uses
the system's ssh client with the device's own ssh_config (its key and known_hosts), as a user would."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import predictions

SSHD = Path("/usr/sbin/sshd")


@pytest.fixture(scope="module", autouse=True)
def _openssh() -> None:
    """A missing OpenSSH fails these tests rather than skipping them: `make test` installs it."""
    if not SSHD.exists() or shutil.which("ssh") is None:
        pytest.fail("OpenSSH is missing: apt-get install -y openssh-server openssh-client (make test does this)")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True, timeout=60)


class Server:
    """One sshd on 127.0.0.1, started and stopped by the tests."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.host_key = root / "host_ed25519"
        _keygen(self.host_key)
        self.user_key = root / "user_ed25519"
        _keygen(self.user_key)
        (root / "authorized_keys").write_text((root / "user_ed25519.pub").read_text())
        self.port = _free_port()
        self.config = root / "sshd_config"
        self.config.write_text(
            "\n".join([
                f"Port {self.port}", "ListenAddress 127.0.0.1", f"HostKey {self.host_key}",
                f"PidFile {root / 'sshd.pid'}", f"AuthorizedKeysFile {root / 'authorized_keys'}",
                "PasswordAuthentication no", "KbdInteractiveAuthentication no", "PubkeyAuthentication yes",
                "PermitRootLogin prohibit-password", "StrictModes no", "UsePAM no", "LogLevel ERROR",
            ]) + "\n"
        )  # fmt: skip
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation directory
        self.process = subprocess.Popen(
            [str(SSHD), "-D", "-e", "-f", str(self.config)], stderr=subprocess.PIPE, start_new_session=True
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            if self.process.poll() is not None:
                raise RuntimeError(f"sshd did not start: {self.process.stderr.read().decode()}")  # type: ignore[union-attr]
            time.sleep(0.1)
        raise RuntimeError("sshd did not listen within 20 s")

    def kill_sessions(self) -> None:
        """Drop every connection (the per-connection sshd processes), as a board that loses power would."""
        assert self.process is not None
        subprocess.run(["pkill", "-KILL", "-P", str(self.process.pid)], check=False)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def client_config(self, name: str, key: Path | None = None, known: bool = True) -> Path:
        """An ssh_config for the client: the user key, and known_hosts holding this server's host key."""
        known_hosts = self.root / f"known_hosts-{name}"
        public = (self.root / "host_ed25519.pub").read_text().split()
        known_hosts.write_text(f"[127.0.0.1]:{self.port} {public[0]} {public[1]}\n" if known else "")
        path = self.root / f"ssh_config-{name}"
        path.write_text(
            f"Host *\n  IdentityFile {key or self.user_key}\n  IdentitiesOnly yes\n  UserKnownHostsFile {known_hosts}\n"
            "  GlobalKnownHostsFile /dev/null\n"
        )
        return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server(tmp_path_factory.mktemp("sshd"))
    running.start()
    yield running
    running.stop()


@pytest.fixture()
def devices(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """`edgekit ARGS` in a subprocess with its own devices file (EDGEKIT_DEVICES)."""
    env = {**os.environ, "EDGEKIT_DEVICES": str(tmp_path / "devices.toml")}

    def run(*args: str | Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "edgekit.cli.main", *map(str, args)]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)

    return run


def _add(run: Callable[..., subprocess.CompletedProcess[str]], name: str, server: Server, venv: Path,
         cache: Path, config: Path | None = None, port: int | None = None, edgekit: str | None = None,
         threads: int | None = None) -> None:  # fmt: skip
    args = ["devices", "add", name, f"ssh://root@127.0.0.1:{port or server.port}",
            "--ssh-config", config or server.client_config(name), "--cache-dir", cache,
            "--edgekit", edgekit or venv / "bin" / "edgekit"]  # fmt: skip
    if threads is not None:
        args += ["--threads", str(threads)]
    result = run(*args)
    assert result.returncode == 0, result.stderr


def _one_error(result: subprocess.CompletedProcess[str], needle: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert lines and lines[-1].startswith("error: ") and needle in lines[-1], result.stderr
    assert "Traceback" not in result.stderr


def test_devices_are_added_checked_listed_and_removed(
    server: Server, device_venv: Path, devices, tmp_path: Path
) -> None:
    _add(devices, "bench-board", server, device_venv, tmp_path / "cache")
    checked = devices("devices", "check", "bench-board", "--json")
    assert checked.returncode == 0, checked.stderr
    facts = json.loads(checked.stdout)["devices"]["bench-board"]
    # What doctor on the "device" found: this machine, with edgekit's device install (no workstation side).
    assert facts["target"] == "x86-cpu" and facts["edgekit"] == __import__("edgekit").__version__
    assert facts["onnxruntime"].startswith("ok") and facts["openvino"].startswith("missing")
    listed = json.loads(devices("devices", "list", "--json").stdout)
    assert [d["name"] for d in listed["devices"]] == ["bench-board"] and listed["devices"][0]["facts"] == facts
    assert "password" not in (tmp_path / "devices.toml").read_text().lower()
    _one_error(devices("devices", "add", "bench-board", "ssh://root@127.0.0.1"), "exists")
    _one_error(devices("devices", "add", "x", "ssh://root:secret@127.0.0.1"), "no passwords")
    _one_error(devices("devices", "add", "x", "ssh://-oProxyCommand=touch@127.0.0.1"), "plain names")
    assert devices("devices", "remove", "bench-board").returncode == 0
    _one_error(devices("bench", tmp_path, "--device", "bench-board"), "no device named 'bench-board'")


def test_bench_on_a_device_copies_once_and_labels_its_results(
    server: Server, device_venv: Path, devices, bundle: Path, data_dirs: dict, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    _add(devices, "board", server, device_venv, cache, threads=1)
    # A bundle folder whose name a shell would run: only a digest of its content reaches the device.
    hostile = tmp_path / "b; touch PWNED $(touch PWNED2)"
    shutil.copytree(bundle, hostile)
    out = tmp_path / "results"
    first = devices("bench", hostile, "--device", "board", "--val", data_dirs["val"], "--iterations", "3",
                    "--batch-sizes", "1", "--out", out)  # fmt: skip
    assert first.returncode == 0, first.stderr
    assert "copied to board" in first.stderr
    results = json.loads((out / "bench.json").read_text())
    assert results["device"]["name"] == "board" and results["measured_on"].startswith("device board (ssh://")
    assert results["environment"]["threads"] == 1  # the device's own --threads
    assert results["accuracy"]["images"] == sum(1 for _ in data_dirs["val"].rglob("*.png"))
    assert results["bundle"]["path"] == str(hostile)
    assert not list(tmp_path.rglob("PWNED*")) and not list(Path.home().glob("PWNED*"))
    # The same content again: not copied twice; nothing half-copied or left running on the device.
    second = devices("bench", bundle, "--device", "board", "--iterations", "2", "--batch-sizes", "1",
                     "--out", tmp_path / "again")  # fmt: skip
    assert second.returncode == 0, second.stderr
    assert "already on board" in second.stderr
    assert len(list((cache / "bundles").iterdir())) == 1
    assert not list(cache.rglob(".incoming*")) and not list((cache / "runs").iterdir())
    # predict --device: the same answers as here, for the local files, in their order.
    first, second = sorted(data_dirs["val"].iterdir())[:2]
    images = sorted(first.iterdir())[:3] + sorted(second.iterdir())[:2]
    remote = devices("predict", bundle, *images, "--device", "board", "--top-k", "2", "--json")
    local = devices("predict", bundle, *images, "--top-k", "2", "--json")
    assert remote.returncode == 0 and local.returncode == 0, remote.stderr + local.stderr
    there, here = predictions(remote.stdout), predictions(local.stdout)
    assert [p["file"] for p in there] == [str(i) for i in images] == [p["file"] for p in here]
    for a, b in zip(there, here):
        assert [r["index"] for r in a["top_k"]] == [r["index"] for r in b["top_k"]]
        assert [r["prob"] for r in a["top_k"]] == pytest.approx([r["prob"] for r in b["top_k"]], abs=1e-5)
    assert all(p["device"] == "board" for p in there)


def test_sweep_on_two_devices_reports_both_side_by_side(
    server: Server, device_venv: Path, devices, trained: dict, data_dirs: dict, tmp_path: Path
) -> None:
    for name, threads in (("one-thread", 1), ("two-threads", 2)):
        _add(devices, name, server, device_venv, tmp_path / f"cache-{name}", threads=threads)
    out = tmp_path / "sweep"
    result = devices("sweep", trained["path"], "--target", "x86-cpu", "--val", data_dirs["val"], "--precisions",
                     "fp32", "--iterations", "3", "--device", "one-thread", "--device", "two-threads", "--out", out,
                     "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    swept = json.loads(result.stdout)
    measured = {json.loads(Path(p).read_text())["device"]["name"]: json.loads(Path(p).read_text())
                for p in swept["results"]}  # fmt: skip
    assert sorted(measured) == ["one-thread", "two-threads"]
    assert measured["one-thread"]["environment"]["threads"] == 1
    assert measured["two-threads"]["environment"]["threads"] == 2
    report = Path(swept["report"]["markdown"]).read_text()
    assert "on one-thread" in report and "on two-threads" in report
    assert "device one-thread (ssh://root@127.0.0.1" in report
    # A board that cannot be reached is reported; the other one finishes and is in the report.
    _add(devices, "gone", server, device_venv, tmp_path / "cache-gone", port=_free_port())
    result = devices("sweep", trained["path"], "--target", "x86-cpu", "--val", data_dirs["val"], "--precisions", "fp32",
                     "--iterations", "2", "--device", "one-thread", "--device", "gone", "--out", tmp_path / "lost",
                     "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    swept = json.loads(result.stdout)
    assert list(swept["lost"]) == ["gone"] and "nothing accepts SSH connections" in swept["lost"]["gone"]
    assert [json.loads(Path(p).read_text())["device"]["name"] for p in swept["results"]] == ["one-thread"]
    assert "on one-thread" in Path(swept["report"]["markdown"]).read_text()


def test_connection_failures_say_what_to_do(
    server: Server, device_venv: Path, devices, bundle: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    other_key = tmp_path / "other_ed25519"
    _keygen(other_key)
    fake = tmp_path / "old-edgekit"
    fake.write_text("#!/bin/sh\necho 'edgekit, version 0.0.1'\n")
    fake.chmod(0o755)
    cases = {
        "wrong-port": ({"port": _free_port()}, "nothing accepts SSH connections"),
        "bad-key": ({"config": server.client_config("bad-key", key=other_key)}, "refused the SSH key"),
        "unknown-host": ({"config": server.client_config("unknown-host", known=False)}, "never accepts host keys"),
        "no-edgekit": ({"edgekit": "/nonexistent/edgekit"}, "edgekit is not installed on no-edgekit"),
        "old-edgekit": ({"edgekit": str(fake)}, "runs edgekit 0.0.1"),
    }
    for name, (fields, needle) in cases.items():
        _add(devices, name, server, device_venv, cache, **fields)
        out = tmp_path / f"out-{name}"
        _one_error(devices("bench", bundle, "--device", name, "--iterations", "1", "--out", out), needle)
        assert not out.exists()
    assert not (cache / "bundles").exists() and not [p for p in cache.rglob("*") if p.is_file()]  # nothing copied
    # An unknown host key is never accepted: known_hosts stays empty.
    assert (server.root / "known_hosts-unknown-host").read_text() == ""


def test_a_connection_lost_mid_bench_is_one_error_and_leaves_nothing(
    device_venv: Path, devices, bundle: Path, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    board = Server(tmp_path_factory.mktemp("sshd-lost"))
    board.start()
    try:
        cache = tmp_path / "cache"
        _add(devices, "flaky", board, device_venv, cache)
        out = tmp_path / "out"
        env = {**os.environ, "EDGEKIT_DEVICES": str(tmp_path / "devices.toml")}
        process = subprocess.Popen(
            [sys.executable, "-m", "edgekit.cli.main", "bench", str(bundle), "--device", "flaky", "--iterations",
             "100000", "--batch-sizes", "1", "--out", str(out)],
            stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        assert process.stderr is not None
        seen = []
        for line in process.stderr:  # the bundle is on the device and bench runs there
            seen.append(line)
            if "copied to flaky" in line:
                break
        time.sleep(3)
        board.kill_sessions()
        rest = process.stderr.read()
        process.wait(timeout=120)
        result = subprocess.CompletedProcess(process.args, process.returncode, "", "".join(seen) + rest)
        _one_error(result, "lost")
        assert not out.exists()
        deadline = time.monotonic() + 30  # the device's side notices the hang-up and removes its run folder
        while list((cache / "runs").iterdir()) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not list((cache / "runs").iterdir()) and not list(cache.rglob(".incoming*"))
    finally:
        board.stop()


# A Jetson on loopback: the device install with TensorRT 10.3 and an Orin GPU faked as in
# test_tensorrt_bundle (the fake has exactly TensorRT's published API; TensorRT cannot be installed here).
FAKE_JETSON = """#!{python}
import sys
from pathlib import Path

sys.path.append({tests!r})
from fake_tensorrt import FakeTensorRT

sys.modules["tensorrt"] = FakeTensorRT("10.3.0")
import edgekit.backends.tensorrt.bundle_engines as engine
import edgekit.pipeline.device_build as device_build
from edgekit.backends.tensorrt import device
from edgekit.backends.tensorrt.device import CudaDevice
from edgekit.backends.tensorrt.run import TensorRTBackend

orin = CudaDevice(name="Orin", compute_capability="8.7", driver_version="12.6", memory_mb=15600)
TensorRTBackend.unavailable_reason = classmethod(lambda cls: None)
device.probe = engine.probe = lambda ordinal=0: orin
device_build.check_device_model = lambda *args: {{"checked": False, "why": "no GPU on this stand-in"}}
from edgekit.cli.main import main

try:
    main()
finally:
    if {tamper} and sys.argv[1:2] == ["build"]:  # a device that also changes the model it was sent
        from edgekit.runtime.bundle import read_manifest, write_manifest

        bundle = Path(sys.argv[2])
        manifest = read_manifest(bundle)
        model = bundle / manifest.model_file
        model.write_bytes(model.read_bytes() + b"\\0")
        write_manifest(bundle, manifest.to_dict())
"""


def _fake_jetson(tmp_path: Path, venv: Path, tamper: bool = False) -> Path:
    launcher = tmp_path / ("tampering-jetson" if tamper else "fake-jetson")
    tests = str(Path(__file__).parent)
    launcher.write_text(FAKE_JETSON.format(python=venv / "bin" / "python", tests=tests, tamper=tamper))
    launcher.chmod(0o755)
    return launcher


def test_build_on_a_device_brings_the_engine_back_and_trusts_nothing_else(
    server: Server, device_venv: Path, devices, orin_int8: dict, tmp_path: Path
) -> None:
    from edgekit.runtime.bundle import read_manifest

    cache = tmp_path / "cache"
    _add(devices, "orin", server, device_venv, cache, edgekit=str(_fake_jetson(tmp_path, device_venv)))
    bundle = tmp_path / "orin bundle; $(touch PWNED)"
    shutil.copytree(orin_int8["path"], bundle)
    before = read_manifest(bundle).files
    result = devices("build", bundle, "--device", "orin", "--opt-level", "3", "--no-gpu-fallback", "--json")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    manifest = read_manifest(bundle, verify=True)  # the engine came back hashed like every other file
    engines = manifest.section("tensorrt")["engines"]
    assert [e["file"] for e in engines] == [record["file"]] and record["built_on"]["device"] == "orin"
    assert (bundle / record["file"]).read_bytes() == b"fake-plan-10.3.0"
    assert record["tensorrt_version"] == "10.3.0" and record["device"]["name"] == "Orin"
    assert record["options"]["opt_level"] == 3 and record["options"]["gpu_fallback"] is False  # flags went there
    assert {name: manifest.files[name] for name in before} == before  # everything else as it was
    # The device's cached copy is not changed (content-addressed), its run folder is gone, nothing is left here.
    (cached,) = (cache / "bundles").iterdir()
    assert read_manifest(cached, verify=True).files == before and not list((cache / "runs").iterdir())
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    assert not list(tmp_path.rglob("PWNED")) and not list(Path.home().glob("PWNED"))

    # A device that changes the model it was sent: refused, and the local bundle is left as it was.
    _add(devices, "rogue", server, device_venv, cache, edgekit=str(_fake_jetson(tmp_path, device_venv, tamper=True)))
    files_before = {p: p.read_bytes() for p in bundle.rglob("*") if p.is_file()}
    _one_error(devices("build", bundle, "--device", "rogue"), "files differ from yours")
    assert {p: p.read_bytes() for p in bundle.rglob("*") if p.is_file()} == files_before
    # A device without TensorRT says so, in one line, from the device.
    _add(devices, "no-trt", server, device_venv, cache)
    _one_error(devices("build", bundle, "--device", "no-trt"), "TensorRT is not installed")


def test_precision_auto_and_pruning_are_timed_on_the_devices(
    server: Server, device_venv: Path, devices, trained: dict, data_dirs: dict, tmp_path: Path
) -> None:
    for name, threads in (("one-thread", 1), ("two-threads", 2)):
        _add(devices, name, server, device_venv, tmp_path / f"cache-{name}", threads=threads)
    out = tmp_path / "auto"
    result = devices("compile", trained["path"], "--precision", "auto", "--backend", "onnxruntime", "--val",
                     data_dirs["val"], "--calib", data_dirs["train"], "--calib-size", "64", "--min-agreement", "0",
                     "--device", "one-thread", "--device", "two-threads", "--out", out, "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    auto = json.loads(result.stdout)["precision_auto"]
    timed = [c for c in auto["candidates"] if "rejected" not in c]
    assert {c["precision"] for c in timed} == {"fp32", "int8"}  # the target's fp16 is OpenVINO's: rejected
    for candidate in timed:
        by_device = candidate["p50_ms_by_device"]
        assert sorted(by_device) == ["one-thread", "two-threads"]
        assert candidate["p50_ms"] == max(by_device.values())  # one bundle for both: the slowest decides
    assert auto["measured_on"] == "devices (slowest decides): one-thread, two-threads"
    assert "p50" in result.stderr and "one-thread" in result.stderr
    # --device without --precision auto: one line saying what to use instead.
    _one_error(devices("compile", trained["path"], "--device", "one-thread", "--out", tmp_path / "x"), "bench")

    # Pruning to a latency measured on the board (x86-cpu here: the loopback device is this machine).
    pruned = tmp_path / "pruned.pt"
    first = devices(
        "prune", trained["path"], "--prune-ratio", "0.2", "--device", "one-thread", "--out", pruned, "--json"
    )
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert "measured on one-thread" in report["latency"]["how"]
    before = report["before"]["latency_ms"]
    assert before is not None and report["after"]["latency_ms"] is not None
    for _ in range(3):  # as in test_prune: a loaded machine's first figure can be slow; aim below the latest
        result = devices("prune", trained["path"], "--target-latency", f"{before * 0.6:.3f}", "--device",
                         "one-thread", "--out", tmp_path / "l.pt", "--json")  # fmt: skip
        measured = re.search(r"already meets the target \(\S+ MACs, ([\d.]+) ms\)", result.stderr)
        if result.returncode != 2 or measured is None:
            break
        before = float(measured.group(1))
    assert result.returncode == 0, result.stderr
    steps = json.loads(result.stdout)["steps"]
    assert steps[-1]["latency_ms"] <= before * 0.6


def test_the_device_cache_keeps_the_most_recent_copies(server: Server, tmp_path: Path) -> None:
    from edgekit.remote.devices import Device
    from edgekit.remote.session import KEEP, DeviceSession

    cache = tmp_path / "cache"
    board = Device("cache-board", f"ssh://root@127.0.0.1:{server.port}", ssh_config=str(server.client_config("c")),
                   cache=str(cache))  # fmt: skip
    session = DeviceSession(board)
    pushed = []
    long_ago = time.time() - 3600
    for index in range(KEEP + 3):
        folder = tmp_path / f"folder-{index}"
        folder.mkdir()
        (folder / "data.bin").write_bytes(index.to_bytes(4, "big"))
        pushed.append(session.push(folder, "images"))
        # The eviction orders by modification time (whole seconds on some file systems): each copy is dated a
        # second after the one before, as pushes a second apart would be, without waiting for the clock.
        os.utime(cache / pushed[-1], (long_ago + index, long_ago + index))
    kept = sorted(p.name for p in (cache / "images").iterdir())
    assert len(kept) == KEEP and kept == sorted(p.split("/")[1] for p in pushed[-KEEP:])
    # Using a cached copy again makes it recent: it survives the next eviction.
    again = session.push(tmp_path / f"folder-{3}", "images")
    assert again == pushed[3] and (cache / again).is_dir()
    time.sleep(1.1)
    extra = tmp_path / "folder-extra"
    extra.mkdir()
    (extra / "data.bin").write_bytes(b"extra")
    session.push(extra, "images")
    assert (cache / pushed[3]).is_dir() and len(list((cache / "images").iterdir())) == KEEP


def test_a_full_device_disk_is_one_error_and_leaves_nothing(
    server: Server, device_venv: Path, devices, bundle: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "small-disk"
    cache.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(cache)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small file system here: {mounted.stderr.decode().strip()}")
    try:
        _add(devices, "full", server, device_venv, cache)
        out = tmp_path / "out"
        bench = ["bench", bundle, "--device", "full", "--iterations", "1", "--out", out]
        _one_error(devices(*bench), "disk of full is full")
        assert not out.exists()
        assert [p for p in cache.rglob("*") if p.is_file()] == []  # the half-copied bundle was removed
    finally:
        subprocess.run(["umount", str(cache)], check=False)
