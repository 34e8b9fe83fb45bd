"""Candidate builds for compile: each rung of the accuracy guard's ladder (or each FP32 backend) is converted
into its own scratch directory, run on the check images and timed; the one chosen is copied into the
bundle. Decisions are `optimize/ladder.py`'s; this module only measures."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.backends.base import ConvertRequest, ModelFiles
from edgekit.backends.converters import get_converter
from edgekit.backends.registry import reference_backend
from edgekit.core.errors import EdgekitError
from edgekit.core.progress import QUIET, Progress
from edgekit.measure.evaluate import run_batched
from edgekit.measure.host import host_problem
from edgekit.measure.latency import blank_input, time_runs
from edgekit.measure.stats import Agreement, top1_agreement
from edgekit.optimize.ladder import Outcome, Rung
from edgekit.runtime.model import Runner
from edgekit.targets import Target

SENSITIVITY_IMAGES = 128


@dataclasses.dataclass(frozen=True)
class CheckImages:
    """The images every candidate runs on, with FP32's outputs on them."""

    inputs: np.ndarray  # parity / --val images
    reference: np.ndarray
    held_out: np.ndarray | None = None  # the guard's images (never calibrated on)
    held_out_reference: np.ndarray | None = None
    sensitivity: np.ndarray | None = None  # calibration images, for layer-group sensitivity
    sensitivity_reference: np.ndarray | None = None
    labels: np.ndarray | None = None  # of `inputs`, when --val is labelled


@dataclasses.dataclass
class Candidate:
    directory: Path
    model_file: str
    facts: dict[str, Any]
    outputs: np.ndarray  # on CheckImages.inputs


def _relative_error(reference: np.ndarray, candidate: np.ndarray) -> tuple[float, ...]:
    difference = np.linalg.norm(candidate.astype(np.float64) - reference, axis=1)
    return tuple((difference / np.maximum(np.linalg.norm(reference, axis=1), 1e-12)).tolist())


class CandidateBuilder:
    """Builds and measures rungs; `evaluate` is what `ladder.climb` calls."""

    def __init__(
        self,
        fp32: Path,
        work: Path,
        request: ConvertRequest,
        target: Target,
        threads: int,
        batch: int | None,
        crop: int,
        images: CheckImages,
        progress: Progress = QUIET,
    ) -> None:
        self.fp32, self.work, self.request, self.target = fp32, work, request, target
        self.threads, self.batch, self.crop, self.images, self.progress = threads, batch, crop, images, progress
        self.built: dict[Rung, Candidate] = {}
        self.outcomes: dict[Rung, Outcome] = {}  # a rung asked for twice (sensitivity, then a step) is built once

    def _runner(self, rung: Rung, directory: Path, model_file: str) -> Runner:
        backend = get_converter(rung.backend).backend
        # A portable file (TensorRT's ONNX) is checked where it can run here: the reference runtime on the CPU.
        run_with = reference_backend() if backend.capabilities.portable_onnx else backend
        files = ModelFiles.from_directory(directory, model_file, run_with)
        return Runner(run_with, files, self.threads, self.batch, self.request.precision)

    def evaluate(self, rung: Rung) -> Outcome:
        if rung not in self.outcomes:
            self.outcomes[rung] = self._measure(rung)
        return self.outcomes[rung]

    def _measure(self, rung: Rung) -> Outcome:
        converter = get_converter(rung.backend)
        directory = self.work / f"candidate-{len(self.outcomes)}"
        directory.mkdir()
        setting = rung.setting
        request = dataclasses.replace(
            self.request,
            method=setting.method if setting and setting.method else self.request.method,
            options=setting.options if setting else (),
            keep_fp32=rung.keep_fp32,
        )
        try:
            model_file, facts = converter.convert(self.fp32, directory, request)
        except EdgekitError as exc:  # a quantizer that refuses this rung: recorded, the ladder goes on
            shutil.rmtree(directory)
            return Outcome(rung, error=str(exc))
        except ValueError as exc:
            # A quantizer's numerics giving up on these images (ONNX Runtime's histogram calibrators on
            # constant activations, for one): that rung is out, the others may still work.
            shutil.rmtree(directory)
            return Outcome(rung, error=f"the quantizer failed on these calibration images ({exc})")
        runner = self._runner(rung, directory, model_file)
        images = self.images
        outputs = run_batched(runner.run, images.inputs, 8, self.progress, rung.backend)
        self.built[rung] = Candidate(directory, model_file, facts, outputs)
        agrees = guard = correct = reference_correct = None
        if images.held_out is not None and images.held_out_reference is not None:
            held = run_batched(runner.run, images.held_out, 8)
            agrees = top1_agreement(images.held_out_reference, held).matches
            guard = Agreement.of(images.held_out_reference, held)
        if images.labels is not None:
            correct = tuple((outputs.argmax(1) == images.labels).tolist())
            reference_correct = tuple((images.reference.argmax(1) == images.labels).tolist())
        sensitivity: tuple[float, ...] = ()
        if images.sensitivity is not None and images.sensitivity_reference is not None:
            sensitivity = _relative_error(images.sensitivity_reference, run_batched(runner.run, images.sensitivity, 8))
        return Outcome(rung, agrees, guard, correct, reference_correct, sensitivity)

    def time_together(self, outcomes: Sequence[Outcome]) -> list[Outcome]:
        """`outcomes` with those this host can time (it is their target's device) timed once, together, in
        turns (`measure.latency`): the figures that rank backends against each other come from the same
        minutes, not from builds made minutes apart."""
        timable = [
            o for o in outcomes
            if not o.error and host_problem(self.target, get_converter(o.rung.backend).backend) is None
        ]  # fmt: skip
        if not timable:
            return list(outcomes)
        runners = [self._runner(o.rung, self.built[o.rung].directory, self.built[o.rung].model_file) for o in timable]
        timings = time_runs([r.run for r in runners], [blank_input(self.crop)] * len(runners))
        p50s = {o.rung: t.p50_ms for o, t in zip(timable, timings)}
        updated = [dataclasses.replace(o, p50_ms=p50s[o.rung]) if o.rung in p50s else o for o in outcomes]
        self.outcomes.update({o.rung: o for o in updated})
        return updated

    def install(self, rung: Rung, stage: Path) -> tuple[Candidate, Runner]:
        """Copy the chosen candidate's files into the bundle's staging directory; (it, a runner on the copy)."""
        candidate = self.built[rung]
        backend = get_converter(rung.backend).backend
        for name in (candidate.model_file, *backend.companion_files(candidate.model_file)):
            shutil.copyfile(candidate.directory / name, stage / name)
        return candidate, self._runner(rung, stage, candidate.model_file)
