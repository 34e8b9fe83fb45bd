"""The `--json` convention (docs/errors.md): JSON Lines on stdout, one object per line, each tagged with the
JSON version and the command that printed it; a command with one result prints one line, `predict` one line
per image or frame (`type`) and a summary. The schemas are edgekit/cli/json_schemas/*.json."""

from __future__ import annotations

import json
from typing import Any, Mapping

# Raised only when a field is removed or changes meaning; new fields do not change it.
JSON_VERSION = 1
TAGS = ("json_version", "command")


def json_line(command: str, data: Mapping[str, Any], record_type: str | None = None) -> str:
    """`data` as one tagged JSON line."""
    tags: dict[str, Any] = {"json_version": JSON_VERSION, "command": command}
    if record_type is not None:
        tags["type"] = record_type
    clash = sorted(tags.keys() & data.keys())
    if clash:  # a bug: a result may not carry the convention's own keys
        raise ValueError(f"{command} --json result carries reserved key(s) {clash}")
    return json.dumps({**tags, **data}, default=str)


def parse_lines(text: str) -> list[dict[str, Any]]:
    """The records of another edgekit's `--json` output (a device's), tags removed; ValueError if it is not
    edgekit's JSON of this JSON version."""
    records = []
    for line in text.splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        if not isinstance(record, dict) or record.get("json_version") != JSON_VERSION:
            raise ValueError(f"not edgekit JSON of JSON version {JSON_VERSION}: {line[:80]!r}")
        records.append({key: value for key, value in record.items() if key not in TAGS})
    return records


def parse_one(text: str) -> dict[str, Any]:
    """The one record of a single-result command's `--json` output."""
    records = parse_lines(text)
    if len(records) != 1:
        raise ValueError(f"expected one JSON record, got {len(records)}")
    return records[0]
