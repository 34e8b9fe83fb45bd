"""What a backend's option is (`BackendOption`), and where the CLI finds every backend's: the `options.py` of
each backend's folder, found without importing any runtime, so that `--help` stays instant (no NumPy)."""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class BackendOption:
    """An option a backend declares (`Backend.options`): the CLI makes a flag of it for the commands of its
    stage (`cli/options.py`), `edgekit.load` takes a run option by name, and a device run passes it on as
    the same flag. No option is named anywhere else."""

    name: str  # the keyword: "cuda_graph"
    flag: str  # the command-line flag: "--cuda-graph", or "--sparse/--no-sparse" for an on/off switch
    help: str
    stage: str  # "run": loading a bundle (predict, bench, edgekit.load); "build": compile and build, recorded
    choices: tuple[str, ...] = ()  # a choice among these names
    int_range: tuple[int, int | None] | None = None  # an integer in this range (None: no upper end)
    # Neither: a flag (given or not); a switch ("--x/--no-x"): on, off, or not given (None: the backend decides).

    @property
    def switch(self) -> bool:
        return "/" in self.flag


def declared_options(stage: str) -> list[BackendOption]:
    """Every backend's options of `stage`, backend folders in name order: a backend declares its options in
    its folder's `options.py` (an `OPTIONS` tuple), which imports nothing heavy."""
    found: list[BackendOption] = []
    for package in sorted(p.name for p in pkgutil.iter_modules([str(Path(__file__).parent)]) if p.ispkg):
        try:
            module = importlib.import_module(f"edgekit.backends.{package}.options")
        except ModuleNotFoundError as exc:
            if exc.name != f"edgekit.backends.{package}.options":
                raise
            continue  # a backend without options
        found += [option for option in module.OPTIONS if option.stage == stage]
    return found
