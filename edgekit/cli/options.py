"""Options and output helpers shared by several commands."""

from __future__ import annotations

import json
from typing import Any

import click

json_option = click.option("--json", "as_json", is_flag=True, help="Print the results as JSON on stdout.")
threads_option = click.option(
    "--threads", type=click.IntRange(min=0), default=None, help="CPU threads (0 = all cores; default: the target's)."
)
trust_pickle_option = click.option(
    "--trust-pickle",
    is_flag=True,
    help="Allow checkpoints that hold pickled Python objects. Unpickling runs code: only for files you trust.",
)


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def parse_int_list(value: str, name: str, minimum: int = 1) -> tuple[int, ...]:
    try:
        numbers = tuple(int(part) for part in value.split(",") if part.strip())
    except ValueError:
        raise click.BadParameter(
            f"expected comma-separated integers such as 1,8, got {value!r}", param_hint=name
        ) from None
    if not numbers or min(numbers) < minimum:
        raise click.BadParameter(f"values must be integers >= {minimum}", param_hint=name)
    return numbers
