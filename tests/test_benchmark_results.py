"""Every number dated: each recorded benchmark run says when, on what (CPU, and from the environment recorder
on, its instruction sets), with which libraries and by which command; documents cite files that exist."""

from __future__ import annotations

import datetime
import json
import re
from pathlib import Path

import pytest

from edgekit.core.cpu import SPEED_FEATURES
from edgekit.measure.environment import environment

ROOT = Path(__file__).resolve().parent.parent
RESULTS = sorted((ROOT / "benchmarks" / "results").glob("*.json"))


@pytest.mark.parametrize("path", RESULTS, ids=lambda path: path.name)
def test_each_results_file_records_when_where_and_how(path: Path) -> None:
    data = json.loads(path.read_text())
    env = data.get("environment") or data.get("machine")
    assert isinstance(env, dict), "no environment recorded"
    date = data.get("date") or env.get("date")
    assert datetime.datetime.fromisoformat(date).tzinfo is not None  # a timestamp, not a guess
    assert env["cpu"] and env["libraries"]["onnxruntime"] and env["python"]
    assert "benchmarks/" in (env.get("command") or data.get("command")), "no reproducing command"
    assert (path.with_suffix(".md")).exists(), "no rendered results beside the JSON"


def test_the_recorder_takes_the_instruction_sets_that_decide_int8_speed() -> None:
    env = environment(2)
    assert env["threads"] == 2 and env["command"]
    info = Path("/proc/cpuinfo").read_text()
    flags = set(next(line for line in info.splitlines() if line.startswith("flags")).split(":", 1)[1].split())
    assert env["cpu_features"] == [feature for feature in SPEED_FEATURES if feature in flags]
    assert "avx2" in env["cpu_features"]  # every x86 machine this suite runs on has it


def test_documents_cite_results_files_that_exist() -> None:
    documents = [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]
    cited = {
        match
        for document in documents
        for match in re.findall(r"benchmarks/results/[\w./-]+\.(?:md|json)", document.read_text())
    }
    assert cited, "the documents cite no results file"
    missing = sorted(c for c in cited if not (ROOT / c).exists())
    assert not missing, missing
