"""The command line as an automation contract: one option name and definition per concept across every
command, help on every option, old names still read, documented exit codes, and `--json` records that
match their published schemas (docs/errors.md)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click
import jsonschema
import pytest

from edgekit.cli import options as shared
from edgekit.cli.main import cli
from tests.conftest import SCHEMAS, assert_json_schema, json_records

# The one definition of each option several commands take (flag → the decorator every command must use).
SHARED_OPTIONS = {
    "--threads": shared.threads_option,
    "--json": shared.json_option,
    "--quiet": shared.quiet_option,
    "--force": shared.force_option,
    "--target": shared.target_option,
    "--calib": shared.calib_option,
    "--calib-size": shared.calib_size_option,
    "--method": shared.method_option,
    "--iterations": shared.iterations_option,
    "--max-accuracy-drop": shared.max_accuracy_drop_option,
    "--prune-ratio": shared.prune_ratio_option,
    "--resize": shared.resize_option,
    "--crop": shared.crop_option,
    "--classes": shared.classes_option,
    "--arch": shared.arch_option,
    "--trust-pickle": shared.trust_pickle_option,
}
# Names a concept had before it had one name everywhere: still read (hidden), never shown.
OLD_NAMES = {"--ratio": "--prune-ratio", "--prune": "--prune-ratio", "--budget": "--max-accuracy-drop",
             "--cache": "--cache-dir"}  # fmt: skip


def _commands(command: click.Command = cli, path: str = "") -> list[tuple[str, click.Command]]:
    if isinstance(command, click.Group):
        return [found for name, sub in command.commands.items() for found in _commands(sub, f"{path} {name}".strip())]
    return [(path, command)]


def _options(command: click.Command) -> list[click.Option]:
    return [p for p in command.params if isinstance(p, click.Option) and not p.hidden]


def _definition(option: click.Option) -> dict[str, Any]:
    return {"opts": option.opts + option.secondary_opts, "help": option.help, "default": option.default,
            "type": repr(option.type), "flag": option.is_flag, "multiple": option.multiple,
            "metavar": option.metavar, "show_default": option.show_default}  # fmt: skip


def _reference(flag: str) -> dict[str, Any]:
    command = SHARED_OPTIONS[flag](click.Command("reference", callback=lambda **_: None))
    return _definition(next(p for p in command.params if flag in p.opts))


def test_every_command_takes_the_one_definition_of_each_shared_option() -> None:
    seen: dict[str, list[str]] = {}
    for path, command in _commands():
        for option in _options(command):
            assert option.help, f"edgekit {path} {option.opts[0]} has no help"
            flag = next((opt for opt in option.opts if opt in SHARED_OPTIONS), None)
            if flag is not None:
                assert _definition(option) == _reference(flag), f"edgekit {path} {flag} differs from the one definition"
                seen.setdefault(flag, []).append(path)
            assert not set(option.opts) & OLD_NAMES.keys(), f"edgekit {path} shows the old name {option.opts}"
    # Each shared option is shared in fact: the table describes the commands, not itself.
    assert {flag for flag, paths in seen.items() if len(paths) >= 2} == set(SHARED_OPTIONS)


def test_every_command_that_shows_progress_or_prints_results_has_quiet_and_json() -> None:
    printing = {path for path, command in _commands() if any("--json" in o.opts for o in _options(command))}
    assert printing >= {"compile", "prune", "finetune", "quantize", "build", "predict", "bench", "sweep", "report",
                        "inspect", "targets", "doctor", "devices list", "devices check"}  # fmt: skip
    with_progress = {"compile", "prune", "finetune", "quantize", "build", "predict", "bench", "sweep", "report"}
    for path, command in _commands():
        if path in with_progress:
            assert any("--quiet" in o.opts for o in _options(command)), path


@pytest.mark.parametrize(
    ("args", "name", "value"),
    [
        (["prune", "m.pt", "--out", "p.pt", "--ratio", "0.3"], "prune_ratio", (0.3,)),
        (["compile", "m.pt", "--prune", "auto"], "prune_ratio", ("auto",)),
        (["sweep", "m.pt", "--val", "v", "--out", "o", "--prune", "0,0.4"], "prune_ratio", (0.0, 0.4)),
        (["sweep", "m.pt", "--val", "v", "--out", "o", "--budget", "2"], "max_accuracy_drop", 2.0),
        (["report", "--out", "o", "--budget", "0.5"], "max_accuracy_drop", 0.5),
        (["devices", "add", "b", "ssh://u@h", "--cache", "/var/cache/x"], "cache", "/var/cache/x"),
    ],
)
def test_old_names_are_still_read_and_say_the_new_one(args: list[str], name: str, value: Any, capsys) -> None:
    *group, command_name = [a for a in args[:2] if a in ("devices", "add")] or [args[0]]
    command = cli.commands[args[0]]
    rest = args[1:]
    if group:  # devices add
        command, rest = command.commands["add"], args[2:]
    ctx = command.make_context(command_name, list(rest))
    assert ctx.params[name] == value
    old = next(arg for arg in rest if arg in OLD_NAMES)
    assert f"note: {old} is now called {OLD_NAMES[old]}" in capsys.readouterr().err


def test_the_new_name_wins_over_the_old_one(capsys) -> None:
    ctx = cli.commands["report"].make_context("report", ["--out", "o", "--max-accuracy-drop", "3", "--budget", "0.5"])
    assert ctx.params["max_accuracy_drop"] == 3.0


def test_published_schemas_are_valid_json_schemas() -> None:
    names = {path.stem for path in SCHEMAS.glob("*.json")}
    assert names == {path.replace(" ", "-") for path, command in _commands()
                     if any("--json" in o.opts for o in _options(command))}  # fmt: skip
    for path in SCHEMAS.glob("*.json"):
        jsonschema.Draft202012Validator.check_schema(json.loads(path.read_text()))


def test_json_records_of_the_quick_commands_match_their_schemas(edgekit_cli, bundle: Path, tmp_path: Path) -> None:
    env = {**os.environ, "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "config")}
    quick = [(["targets"], "targets"), (["doctor"], "doctor"), (["devices", "list"], "devices list"),
             (["inspect", str(bundle)], "inspect"), (["inspect", str(bundle / "model.onnx")], "inspect")]  # fmt: skip
    for args, name in quick:
        result = edgekit_cli(*args, "--json", env=env)
        assert result.returncode == 0, result.stderr
        (record,) = assert_json_schema(result.stdout, name)
        assert record["command"] == name and len(result.stdout.splitlines()) == 1


def test_predict_records_and_exit_status_when_some_images_fail(edgekit_cli, bundle: Path, data_dirs: dict,
                                                               tmp_path: Path) -> None:  # fmt: skip
    images = sorted((data_dirs["val"] / "sandal").iterdir())[:2]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really")
    result = edgekit_cli("predict", bundle, *images, broken, "--json")
    assert result.returncode == 3  # finished, but not everything: distinct from success and from bad input
    assert result.stderr.strip().splitlines()[-1].startswith("error: 1 of 3 image file(s) could not be read")
    records = assert_json_schema(result.stdout, "predict")
    assert [r["type"] for r in records] == ["prediction", "prediction", "error", "summary"]
    result = edgekit_cli("predict", bundle, *images, "--json")
    assert result.returncode == 0 and json_records(result.stdout, "summary")[0]["failed"] == 0
    result = edgekit_cli("predict", bundle, broken)
    assert result.returncode == 2 and "none of the 1 image file(s) could be read" in result.stderr


def test_a_schema_would_catch_a_missing_field() -> None:
    """The schemas are not decoration: a record without a documented field is rejected."""
    schema = json.loads((SCHEMAS / "predict.json").read_text())
    good = {"json_version": 1, "command": "predict", "type": "error", "file": "a.jpg", "error": "unreadable"}
    jsonschema.validate(good, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({k: v for k, v in good.items() if k != "error"}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**good, "json_version": 2}, schema)
