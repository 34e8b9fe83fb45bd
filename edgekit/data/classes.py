"""Class names from a file the user gives (`--classes`): one per line, or a JSON list."""

from __future__ import annotations

import json
import os
from pathlib import Path

from edgekit.core.errors import EdgekitError


def read_class_file(path: str | os.PathLike[str]) -> list[str]:
    """Class names from a text file (one per line) or a JSON list."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise EdgekitError(f"cannot read class names from {path}: {exc}") from None
    if text.lstrip().startswith("["):
        try:
            names = json.loads(text)
        except json.JSONDecodeError as exc:
            raise EdgekitError(f"{path} is not a valid JSON list of class names: {exc}") from None
        except RecursionError:
            raise EdgekitError(f"{path} nests too deeply to be a JSON list of class names") from None
    else:
        names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names or not all(isinstance(n, str) for n in names):
        raise EdgekitError(f"{path} holds no class names (one per line, or a JSON list of strings)")
    if len(set(names)) != len(names):
        raise EdgekitError(f"{path} lists a class name twice")
    return names
