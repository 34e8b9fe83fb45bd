"""Boards that fail mid-way (issue 31): a real sshd on 127.0.0.1 whose connection is really cut during the push,
during a remote build and while results come back, and two workstations building on one board at once.

The link is an ssh ProxyCommand that relays the bytes (throttled, to make a phase last long enough to cut it
in) and is killed to cut the connection, as a pulled cable or a board that reboots would."""

# ruff: noqa: F811 (the sshd fixtures are imported from test_devices and used as fixtures)
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.test_devices import Server, _add, _fake_jetson, _one_error, _openssh, devices, server  # noqa: F401

RELAY = r"""
import os, socket, sys, threading, time
host, port, up_rate, down_rate = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
link = socket.create_connection((host, port))

def pump(read, write, rate):
    while True:
        data = read(16384)
        if not data:
            break
        write(data)
        if rate:
            time.sleep(len(data) / rate)

def down():
    pump(link.recv, lambda d: (os.write(1, d)), down_rate)
    os._exit(0)

threading.Thread(target=down, daemon=True).start()
pump(lambda n: os.read(0, n), link.sendall, up_rate)
link.shutdown(socket.SHUT_WR)
threading.Event().wait()
"""


def _link(board: Server, name: str, tmp: Path, up: float = 0, down: float = 0) -> Path:
    """An ssh_config whose connection goes through a relay (bytes/s each way; 0: unthrottled) named `name`."""
    relay = tmp / f"relay-{name}.py"
    relay.write_text(RELAY)
    config = board.client_config(name)
    config.write_text(config.read_text() + f"  ProxyCommand {sys.executable} {relay} %h %p {up} {down}\n")
    return config


def _cut(name: str) -> None:
    subprocess.run(["pkill", "-KILL", "-f", f"relay-{name}.py"], check=False)


def _start(devices_env: dict[str, str], *args: object) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "edgekit.cli.main", *map(str, args)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=devices_env)


def _finish(process: subprocess.Popen[str]) -> subprocess.CompletedProcess[str]:
    stdout, stderr = process.communicate(timeout=300)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            state = subprocess.run(["ps", "-eo", "pid,ppid,stat,etime,args"], capture_output=True, text=True).stdout
            raise AssertionError(f"timed out waiting for {what}\n{state}")
        time.sleep(0.05)


def _settled(cache: Path) -> bool:
    """The device side has cleaned up: no half-copied folder and no run folder left."""
    runs = cache / "runs"
    return not list(cache.rglob(".incoming*")) and (not runs.exists() or not list(runs.iterdir()))


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "EDGEKIT_DEVICES": str(tmp_path / "devices.toml")}


def test_a_push_cut_midway_leaves_nothing_and_the_next_run_copies_it_whole(
    server: Server,
    device_venv: Path,
    devices,
    env: dict,
    bundle: Path,
    image: Path,
    tmp_path: Path,
) -> None:
    cache = tmp_path / "cache"
    slow = _link(server, "slow-push", tmp_path, up=400_000)  # the bundle takes tens of seconds to go up
    _add(devices, "board", server, device_venv, cache, config=slow)
    process = _start(env, "predict", bundle, image, "--device", "board")
    _wait_for(lambda: bool(list((cache / "bundles").glob(".incoming*"))), "the push to start")
    _cut("slow-push")
    result = _finish(process)
    _one_error(result, "board")
    assert "Traceback" not in result.stderr
    _wait_for(lambda: _settled(cache), "the device to remove the half-copied bundle", 30)
    assert not [p for p in (cache / "bundles").iterdir() if not p.name.startswith(".")]  # nothing half-there

    # The next run, on a good link, copies the bundle whole; the one after finds it in the cache.
    _add(devices, "steady", server, device_venv, cache, config=_link(server, "good", tmp_path))  # same board
    again = devices("predict", bundle, image, "--device", "steady")
    assert again.returncode == 0 and f"{bundle} copied to steady" in again.stderr, again.stderr
    third = devices("predict", bundle, image, "--device", "steady")
    assert third.returncode == 0 and f"{bundle} already on steady" in third.stderr, third.stderr
    assert third.stdout == again.stdout


def _slow_jetson(tmp_path: Path, venv: Path, log: Path, before_s: float) -> Path:
    """The fake Jetson, logging when each build starts and ends and taking `before_s` seconds first."""
    inner = _fake_jetson(tmp_path, venv)
    wrapper = tmp_path / "slow-jetson"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = build ]; then echo "start $$ $(date +%s.%N)" >> {log}; sleep {before_s}; fi\n'
        f'"{inner}" "$@"\nstatus=$?\n'
        f'if [ "$1" = build ]; then echo "end $$ $(date +%s.%N)" >> {log}; fi\n'
        "exit $status\n"
    )
    wrapper.chmod(0o755)
    return wrapper


@pytest.mark.parametrize(
    ("phase", "before_s", "down_rate", "mark"),
    [
        ("during the remote build", 4, 0, "start"),
        # The built bundle comes back as a tar at 200 kB/s: seconds for a cut to land in.
        ("while the engine comes back", 0, 200_000, "end"),
    ],
)
def test_a_connection_cut_during_a_build_changes_nothing_and_the_rebuild_works(
    server: Server, device_venv: Path, devices, env: dict, orin_int8: dict, tmp_path: Path,
    phase: str, before_s: float, down_rate: float, mark: str,
) -> None:  # fmt: skip
    cache, log = tmp_path / "cache", tmp_path / "builds.log"
    jetson = _slow_jetson(tmp_path, device_venv, log, before_s=before_s)
    link = _link(server, "orin", tmp_path, down=down_rate)
    _add(devices, "orin", server, device_venv, cache, config=link, edgekit=str(jetson))
    bundle = tmp_path / "bundle"
    shutil.copytree(orin_int8["path"], bundle)
    files_before = {p: p.read_bytes() for p in bundle.rglob("*") if p.is_file()}
    process = _start(env, "build", bundle, "--device", "orin")
    _wait_for(lambda: log.exists() and mark in log.read_text(), f"the device to reach {phase}", 300)
    time.sleep(0.5)
    _cut("orin")
    _one_error(_finish(process), "orin")
    assert {p: p.read_bytes() for p in bundle.rglob("*") if p.is_file()} == files_before  # nothing half-written
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".bundle")]
    _wait_for(lambda: _settled(cache), "the device to remove its run folder", 30)
    # The bundle is still in the device's cache: the rebuild does not copy it again, and the lock was released.
    _add(devices, "orin-ok", server, device_venv, cache, edgekit=str(jetson))
    rebuilt = devices("build", bundle, "--device", "orin-ok")
    assert rebuilt.returncode == 0 and "already on orin-ok" in rebuilt.stderr, rebuilt.stderr
    assert any(p.suffix == ".plan" for p in bundle.rglob("*"))


def test_two_builds_on_one_board_wait_for_each_other(
    server: Server,
    device_venv: Path,
    devices,
    env: dict,
    orin_int8: dict,
    tmp_path: Path,
) -> None:
    cache, log = tmp_path / "cache", tmp_path / "builds.log"
    jetson = _slow_jetson(tmp_path, device_venv, log, before_s=3)
    _add(devices, "orin", server, device_venv, cache, edgekit=str(jetson))
    copies = []
    for name in ("first", "second"):
        copies.append(tmp_path / name)
        shutil.copytree(orin_int8["path"], copies[-1])
    processes = [_start(env, "build", copy, "--device", "orin") for copy in copies]
    results = [_finish(process) for process in processes]
    for result in results:
        assert result.returncode == 0, result.stderr
    assert any("busy with another edgekit build or bench" in r.stderr for r in results)
    events = [line.split() for line in log.read_text().splitlines()]
    spans: dict[str, list[float]] = {}
    for _kind, pid, when in events:
        spans.setdefault(pid, []).append(float(when))
    (_, a_end), (b_start, _) = sorted(spans.values())
    assert a_end <= b_start, events  # one after the other, not at once


def test_the_board_enforces_its_own_trust_policy(
    server: Server, device_venv: Path, devices, bundle: Path, image: Path, tmp_path: Path
) -> None:
    """Remote runs verify on the board: its trust policy (here: signatures required, one signer) refuses an
    unsigned bundle sent from a workstation, and accepts it once signed with the listed key."""
    board_config = tmp_path / "board-config"
    (board_config / "edgekit").mkdir(parents=True)
    key = tmp_path / "ci"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    (board_config / "edgekit" / "trust.toml").write_text(
        f'require_signature = true\n[signers]\nci = "{key.with_suffix(".pub").read_text().strip()}"\n'
    )
    launcher = tmp_path / "board-edgekit"
    launcher.write_text(f'#!/bin/sh\nXDG_CONFIG_HOME={board_config} exec {device_venv / "bin" / "edgekit"} "$@"\n')
    launcher.chmod(0o755)
    _add(devices, "fleet", server, device_venv, tmp_path / "cache", edgekit=str(launcher))
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    _one_error(devices("predict", copy, image, "--device", "fleet"), "requires signed bundles")
    assert devices("sign", copy, "--key", key).returncode == 0
    signed = devices("predict", copy, image, "--device", "fleet")
    assert signed.returncode == 0, signed.stderr
