"""Running commands on a device with the system's OpenSSH client.

OpenSSH, not a library: it honours everything the user already set up (`~/.ssh/config`, keys, the agent,
ProxyJump, ControlMaster). edgekit adds only what makes it safe to run unattended: BatchMode (never a
password prompt; no password is ever stored), StrictHostKeyChecking=yes (an unknown or changed host key
is an error, never accepted), a connect timeout, keep-alives (a lost device is noticed in seconds) and a
timeout on each command. The remote command line is built here from fixed text and `shlex.quote`d
arguments only: no file or device name reaches the remote shell unquoted.

A failure becomes one EdgekitError that says what happened and what to do, from ssh's exit status 255
and its message (OpenSSH prints fixed, documented phrases).
"""

from __future__ import annotations

import shlex
import subprocess
import threading
from collections.abc import Callable, Sequence
from typing import IO, Any

from edgekit.core.errors import EdgekitError
from edgekit.remote.devices import Device

CONNECT_TIMEOUT_S = 10
ALIVE_INTERVAL_S = 5  # with ALIVE_COUNT missed answers: a dead link is found within ~15 s
ALIVE_COUNT = 3
SSH_FAILED = 255  # ssh's own exit status for its errors (the remote command's is passed through)
NOT_FOUND = 127  # the remote shell's "command not found"


def quote_command(words: Sequence[str]) -> str:
    return " ".join(shlex.quote(str(word)) for word in words)


def ssh_argv(device: Device, remote_command: str) -> list[str]:
    argv = [
        "ssh",
        "-o", "BatchMode=yes",
        "-o", "StrictHostKeyChecking=yes",
        "-o", f"ConnectTimeout={CONNECT_TIMEOUT_S}",
        "-o", f"ServerAliveInterval={ALIVE_INTERVAL_S}",
        "-o", f"ServerAliveCountMax={ALIVE_COUNT}",
        "-o", "LogLevel=ERROR",
    ]  # fmt: skip
    if device.ssh_config:
        argv += ["-F", device.ssh_config]
    if device.port is not None:
        argv += ["-p", str(device.port)]
    if device.user:
        argv += ["-l", device.user]
    return [*argv, "--", device.host, remote_command]


def ssh_problem(device: Device, stderr: str) -> str:
    """What an ssh failure (exit 255) means, and what to do about it, in one sentence."""
    text = stderr.lower()
    where = f"{device.host}" + (f" port {device.port}" if device.port else "")
    if "host key verification failed" in text or "host key for" in text or "identification has changed" in text:
        keyscan = f"ssh-keyscan {'-p ' + str(device.port) + ' ' if device.port else ''}{device.host}"
        return (
            f"the SSH host key of {where} is not known or has changed; edgekit never accepts host keys itself: "
            f"check its fingerprint and add it to known_hosts (e.g. `{keyscan} >> ~/.ssh/known_hosts`, or "
            f"connect once with ssh)"
        )
    if "permission denied" in text or "too many authentication failures" in text:
        return (
            f"{where} refused the SSH key for user {device.user or '(default)'}; install your key on the device "
            f"(`ssh-copy-id`), load it into the agent (`ssh-add`), or name it in ~/.ssh/config"
        )
    if "connection refused" in text:
        return f"nothing accepts SSH connections at {where}: is the board on and sshd running, and is the port right?"
    if "could not resolve hostname" in text or "name or service not known" in text:
        return f"the host name {device.host} does not resolve: check the device's URL (`edgekit devices list`)"
    if "timed out" in text or "no route to host" in text or "network is unreachable" in text:
        return f"{where} did not answer within {CONNECT_TIMEOUT_S} s: is it on this network, and powered?"
    if _disk_full(text):
        cache = device.cache or "~/.cache/edgekit"
        return f"the disk of {device.name} is full: free space there (edgekit's cache is {cache})"
    last = stderr.strip().splitlines()[-1] if stderr.strip() else "no message"
    return f"the SSH connection to {where} failed or was lost ({last}); check the device and run again"


class Completed:
    def __init__(self, status: int, stdout: bytes, stderr: str) -> None:
        self.status, self.stdout, self.stderr = status, stdout, stderr


def run_ssh(
    device: Device,
    remote_command: str,
    timeout_s: float,
    feed: Callable[[IO[bytes]], None] | None = None,
    on_stderr: Callable[[str], None] | None = None,
    hold: bool = False,
) -> Completed:
    """Run `remote_command` on the device; `feed` writes its stdin (then it is closed), `on_stderr` sees each
    line of its stderr as it comes (progress streamed back); `hold` keeps its stdin open, unwritten, until
    it ends (the remote side reads end-of-file there when the connection is lost). Raises EdgekitError for
    ssh's own failures and for the timeout; the remote command's status is returned."""
    process = subprocess.Popen(
        ssh_argv(device, remote_command),
        stdin=subprocess.PIPE if feed or hold else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    errors: list[str] = []

    def read_stderr(stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            errors.append(line)
            if on_stderr is not None:
                on_stderr(line)

    assert process.stderr is not None and process.stdout is not None
    reader = threading.Thread(target=read_stderr, args=(process.stderr,), daemon=True)
    reader.start()
    output: list[bytes] = []
    collector = threading.Thread(target=lambda: output.append(process.stdout.read()), daemon=True)  # type: ignore[union-attr]
    collector.start()
    try:
        if feed is not None:
            assert process.stdin is not None
            try:
                feed(process.stdin)
                process.stdin.close()
            except (BrokenPipeError, ConnectionResetError):
                pass  # the connection went away: the status and message below say why
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise EdgekitError(
            f"{device.name} did not finish within {timeout_s:.0f} s; the command was stopped (is the device "
            f"overloaded? a longer --device-timeout may help)"
        ) from None
    except BaseException:
        process.kill()  # Ctrl-C: the ssh session goes, and with it the remote command (SIGHUP there)
        process.wait()
        raise
    finally:
        if hold and process.stdin is not None:
            process.stdin.close()
        reader.join(timeout=5)
        collector.join(timeout=5)
    stderr = "\n".join(errors)
    if process.returncode == SSH_FAILED:
        raise EdgekitError(f"{device.name}: {ssh_problem(device, stderr)}")
    return Completed(process.returncode, output[0] if output else b"", stderr)


def _disk_full(stderr: str) -> bool:
    """ENOSPC as the tools say it: the C library's message, or GNU tar's short write on a full disk."""
    text = stderr.lower()
    return "no space left on device" in text or ("tar:" in text and "wrote only" in text)


def remote_error(device: Device, completed: Completed, what: str) -> Any:
    """The exception for a remote command that failed: its own `error:` line for a user's mistake (exit 2),
    a missing edgekit (127), or a bug (anything else: its traceback was streamed above; exit 1 here too)."""
    if completed.status == NOT_FOUND:
        return EdgekitError(
            f"edgekit is not installed on {device.name} (`{device.edgekit}` not found): install it there "
            f"(pip install edgekit plus the bundle's runtime), or give its path with `edgekit devices add "
            f"{device.name} {device.url} --edgekit /path/to/edgekit --force`"
        )
    lines = [line for line in completed.stderr.splitlines() if line.startswith("error: ")]
    if _disk_full(completed.stderr):
        return EdgekitError(f"{device.name}: {ssh_problem(device, completed.stderr)}")
    if completed.status == 2 and lines:
        return EdgekitError(f"on {device.name}: {lines[-1][len('error: ') :]}")
    return RuntimeError(
        f"{what} on {device.name} failed with exit status {completed.status}: {completed.stderr[-2000:]}"
    )
