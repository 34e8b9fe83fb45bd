"""`edgekit predict --device NAME`: the images go to the board with the bundle, the predictions come back."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edgekit.core.errors import EdgekitError
from edgekit.core.json_lines import parse_lines
from edgekit.remote.devices import Device
from edgekit.remote.session import DeviceSession


def predict_on_device(
    device: Device,
    bundle: Path,
    files: Sequence[Path],
    top_k: int,
    batch_size: int,
    threads: int | None = None,
    on_line: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Predictions as `edgekit predict --json` gives them, with each `file` the local path it came from."""
    session = DeviceSession(device, on_line)
    session.check_version()
    remote_bundle = session.push(bundle, "bundles")
    with tempfile.TemporaryDirectory(prefix="edgekit-predict-") as staging:
        # Numbered names: the device sees no local path, and each answer maps back to its file by number.
        for number, path in enumerate(files):
            staged = Path(staging) / f"{number:06d}{path.suffix.lower()}"
            try:
                os.link(path, staged)
            except OSError:
                shutil.copyfile(path, staged)
        remote_images = session.push(Path(staging), "images")
    args = ["predict", remote_bundle, remote_images, "--json", "--top-k", str(top_k), "--batch-size", str(batch_size)]
    chosen_threads = threads if threads is not None else device.threads
    if chosen_threads is not None:
        args += ["--threads", str(chosen_threads)]
    try:
        records = parse_lines(session.run_edgekit(args))
    except ValueError:
        raise EdgekitError(f"`edgekit predict` on {device.name} printed no JSON; run it there to see why") from None
    predictions = [record for record in records if record.pop("type", None) in ("prediction", "error")]
    for prediction in predictions:
        number = int(Path(prediction["file"]).stem)
        prediction["file"] = str(files[number])
        prediction["device"] = device.name
    return sorted(predictions, key=lambda p: [str(f) for f in files].index(p["file"]))
