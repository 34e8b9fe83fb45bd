"""Work on a device over SSH: check it, copy bundles and images there (content-addressed), run edgekit there.

Copies are content-addressed: a folder's digest is the SHA-256 of its files' relative paths and contents,
and it goes to CACHE/<kind>/<digest> on the device (CACHE: the device's `cache`, default ~/.cache/edgekit).
An unchanged bundle is not copied twice. A copy is unpacked into a hidden temporary folder that the remote
shell removes on any failure or hang-up, and renamed into place only when complete: nothing half-copied is
ever used or left behind. The cache keeps the KEEP most recently used entries of each kind.
"""

from __future__ import annotations

import datetime
import hashlib
import shlex
import tarfile
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

from edgekit.core.errors import EdgekitError
from edgekit.core.json_lines import parse_one
from edgekit.core.versions import EDGEKIT_VERSION
from edgekit.remote.devices import Device
from edgekit.remote.ssh import quote_command, remote_error, run_ssh

KEEP = 8
QUICK_TIMEOUT_S = 60  # version checks, doctor
COPY_TIMEOUT_S = 1800
RUN_TIMEOUT_S = 3600

RUN_SCRIPT = """mkdir -p {base}/runs && cd {base} || exit 1
trap 'rm -rf {run}' EXIT
trap 'exit 1' HUP INT TERM PIPE
{lock}
{prepare}
exec 3<&0
{command} </dev/null {redirect}&
child=$!
{{ cat <&3; kill -TERM "$child"; }} 9>&- >/dev/null 2>&1 &
watcher=$!
wait "$child"
status=$?
kill "$watcher" 2>/dev/null
{finish}
exit $status
"""

# Builds and benches take the board's lock (flock on a file in the cache): two workstations building on one
# board wait for each other instead of racing for its GPU, its timing cache and its clock. The kernel drops the
# lock when its holder exits, however it ends (a cut connection, a reboot), so a dead run never blocks the next.
LOCK = """exec 9>>.board.lock
if command -v flock >/dev/null 2>&1; then
  flock -n 9 || {{ echo "{name} is busy with another edgekit build or bench: waiting for it" >&2; flock 9; }}
fi"""

# A lost connection breaks the script's own stderr too: SIGPIPE would kill it before its EXIT trap removes the
# run folder, so every such signal becomes an exit (the `trap ... PIPE` line above; found by
# tests/test_device_faults.py, which cuts a real connection mid-build).

# Work on a copy of a cached bundle (the cache is content-addressed: never changed in place), and send
# back the whole run folder (edgekit's stdout as `stdout`, the changed bundle as `bundle/`) as a tar.
COPY_BUNDLE = "mkdir -p {run} && cp -R {bundle} {run}/bundle || exit 1"
SEND_RUN = 'if [ "$status" -eq 0 ]; then tar -c -f - -C {run} . || status=1; fi'

PUSH_SCRIPT = """set -e
base={base}/{kind}
mkdir -p "$base"
final="$base"/{digest}
if [ -d "$final" ]; then touch "$final"; echo cached; exit 0; fi
free=$(df -Pk "$base" | awk 'NR==2 {{print $4}}')
if [ -n "$free" ] && [ "$free" -lt {need_kb} ]; then
  echo "No space left on device: the copy needs {need_kb} KiB, $free KiB are free" >&2; exit 1
fi
tmp=$(mktemp -d "$base/.incoming.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' HUP INT TERM PIPE
tar -x -f - -C "$tmp"
if [ ! -e "$final" ]; then mv "$tmp" "$final"; fi
ls -1t "$base" | tail -n +{evict_from} | while read -r old; do rm -rf "${{base:?}}/$old"; done
echo copied
"""


def device_facts(doctor: dict[str, Any]) -> dict[str, Any]:
    """What `edgekit doctor --json` on a device says it is, for the devices file and every result."""
    facts: dict[str, Any] = {
        "target": doctor.get("host_target") or "unknown",
        "edgekit": doctor.get("edgekit"),
        "python": doctor.get("python"),
        "machine": doctor.get("machine"),
    }
    for finding in doctor.get("findings", []):
        if isinstance(finding, dict) and finding.get("fact") is True:  # what the device is (`Finding.fact`)
            facts[str(finding["topic"])] = f"{finding.get('status')}: {finding.get('detail')}"
    facts["checked"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return facts


def folder_digest(folder: Path) -> tuple[str, list[Path]]:
    """(SHA-256 of the regular files' relative paths and contents, those files)."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink())
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        with path.open("rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest(), files


class DeviceSession:
    """One device, checked once: edgekit there is found and of this edgekit's version."""

    def __init__(self, device: Device, on_line: Callable[[str], None] | None = None) -> None:
        self.device = device
        self.on_line = on_line
        self.base = shlex.quote(device.cache) if device.cache else '"$HOME/.cache/edgekit"'
        self._checked = False

    def note(self, line: str) -> None:
        if self.on_line is not None:
            self.on_line(line)

    def run_edgekit(
        self,
        args: Sequence[str],
        timeout_s: float = RUN_TIMEOUT_S,
        stream: bool = True,
        out_folder: bool = False,
        exclusive: bool = False,
    ) -> bytes:
        """`edgekit ARGS` on the device, in its cache folder (so bundle paths are relative); its stdout.

        With `out_folder`, `--out` names a run folder there that is removed afterwards, whatever happened.
        The remote side watches the connection (its stdin, held open here): when the connection is lost
        it stops edgekit with SIGTERM, which removes its partial files, so nothing is left running or half
        written on the device. `exclusive`: wait for the board's lock first (timings, builds)."""
        run = f"runs/{uuid.uuid4().hex}"
        words = [self.device.edgekit, *args, *(["--out", run] if out_folder else [])]
        return self._run(words, run, timeout_s, stream, **({"lock": self._lock()} if exclusive else {}))

    def run_on_copy(self, bundle: str, args: Sequence[str], timeout_s: float = RUN_TIMEOUT_S) -> bytes:
        """`edgekit ARGS` on a fresh copy of the cached `bundle` (`{bundle}` in ARGS names the copy); a tar of
        the run folder: `stdout` (edgekit's) and `bundle/` as edgekit left it. The run folder is removed
        afterwards, whatever happened (a lost connection stops edgekit, as in `run_edgekit`)."""
        run = f"runs/{uuid.uuid4().hex}"
        quoted = shlex.quote(run)
        words = [self.device.edgekit, *(word.replace("{bundle}", f"{run}/bundle") for word in args)]
        return self._run(
            words,
            run,
            timeout_s,
            stream=True,
            lock=self._lock(),
            prepare=COPY_BUNDLE.format(run=quoted, bundle=shlex.quote(bundle)),
            redirect=f">{quoted}/stdout ",
            finish=SEND_RUN.format(run=quoted),
        )

    def _run(self, words: Sequence[str], run: str, timeout_s: float, stream: bool, **steps: str) -> bytes:
        """RUN_SCRIPT around `words`, with its optional `prepare`, `redirect` and `finish` steps."""
        parts = {"lock": "", "prepare": "", "redirect": "", "finish": "", **steps}
        script = RUN_SCRIPT.format(base=self.base, run=shlex.quote(run), command=quote_command(words), **parts)
        completed = run_ssh(
            self.device, f"sh -c {shlex.quote(script)}", timeout_s, on_stderr=self.note if stream else None, hold=True
        )
        if completed.status != 0:
            raise remote_error(self.device, completed, f"edgekit {words[1] if len(words) > 1 else ''}")
        return completed.stdout

    def _lock(self) -> str:
        return LOCK.format(name=shlex.quote(self.device.name).replace("'", ""))

    def check_version(self) -> str:
        if self._checked:
            return EDGEKIT_VERSION
        output = self.run_edgekit(["--version"], QUICK_TIMEOUT_S, stream=False).decode("utf-8", "replace")
        version = output.strip().rsplit(" ", 1)[-1] if output.strip() else "?"
        if version != EDGEKIT_VERSION:
            raise EdgekitError(
                f"{self.device.name} runs edgekit {version}, this workstation {EDGEKIT_VERSION}: install the same "
                f"version on the device (pip install edgekit=={EDGEKIT_VERSION}) so results mean the same"
            )
        self._checked = True
        return version

    def doctor(self) -> dict[str, Any]:
        self.check_version()
        output = self.run_edgekit(["doctor", "--json"], QUICK_TIMEOUT_S, stream=False)
        try:
            return parse_one(output)
        except ValueError:
            raise EdgekitError(f"`edgekit doctor --json` on {self.device.name} printed no JSON") from None

    def push(self, folder: Path, kind: str) -> str:
        """Copy `folder` to the device unless its content is there already; its path there, relative to the cache."""
        digest, files = folder_digest(folder)
        # What tar needs there: the contents plus a block per file, in KiB (checked before anything is copied).
        need_kb = sum(path.stat().st_size // 1024 + 4 for path in files) + 64
        script = PUSH_SCRIPT.format(
            base=self.base, kind=shlex.quote(kind), digest=digest, evict_from=KEEP + 1, need_kb=need_kb
        )

        def feed(stdin: IO[bytes]) -> None:
            with tarfile.open(fileobj=stdin, mode="w|") as archive:
                for path in files:
                    archive.add(path, arcname=path.relative_to(folder).as_posix(), recursive=False)

        completed = run_ssh(self.device, f"sh -c {shlex.quote(script)}", COPY_TIMEOUT_S, feed=feed)
        if completed.status != 0:
            raise remote_error(self.device, completed, f"copying {folder}")
        state = completed.stdout.decode("utf-8", "replace").strip()
        self.note(f"{folder} {'already on' if state == 'cached' else 'copied to'} {self.device.name} ({digest[:12]})")
        return f"{kind}/{digest}"
