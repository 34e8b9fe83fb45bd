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
from edgekit.measure.stats import Agreement
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
    # A cross-fitted guard (data/calibration.py): two folds of the calibration images and FP32's outputs on them;
    # each fold is judged by a build calibrated on the other, in place of held-out images.
    folds: tuple[np.ndarray, np.ndarray] | None = None
    fold_references: tuple[np.ndarray, np.ndarray] | None = None


@dataclasses.dataclass
class Candidate:
    directory: Path
    model_file: str
    facts: dict[str, Any]
    outputs: np.ndarray  # on CheckImages.inputs
    final: bool = True  # False: a cross-fitted fold's build; the one that ships is built on install


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

    def _request(self, rung: Rung) -> ConvertRequest:
        setting = rung.setting
        return dataclasses.replace(
            self.request,
            method=setting.method if setting and setting.method else self.request.method,
            options=setting.options if setting else (),
            keep_fp32=rung.keep_fp32,
        )

    def _convert(self, rung: Rung, directory: Path, request: ConvertRequest) -> tuple[str, dict[str, Any]] | str:
        """The rung's model file in `directory` (made here), or why its quantizer refused (a string)."""
        directory.mkdir(parents=True)
        try:
            return get_converter(rung.backend).convert(self.fp32, directory, request)
        except EdgekitError as exc:  # a quantizer that refuses this rung: recorded, the ladder goes on
            shutil.rmtree(directory)
            return str(exc)
        except ValueError as exc:
            # A quantizer's numerics giving up on these images (ONNX Runtime's histogram calibrators on
            # constant activations, for one): that rung is out, the others may still work.
            shutil.rmtree(directory)
            return f"the quantizer failed on these calibration images ({exc})"

    def _measure(self, rung: Rung) -> Outcome:
        """Build the rung and measure it. Cross-fitted (`CheckImages.folds`), the rung is two builds, each
        calibrated on one fold and judged on the other; the first also stands for the rung on the other images
        and in the timings (the same graph and quantizer), and the build that ships, calibrated on all the
        images, is made only for the rung chosen (`install`)."""
        directory = self.work / f"candidate-{len(self.outcomes)}"
        request, images = self._request(rung), self.images
        folded = images.folds is not None and images.fold_references is not None
        builds = []
        for index in (0, 1) if folded else (None,):
            if index is None:
                built = self._convert(rung, directory, request)
            else:
                assert images.folds is not None
                size = len(request.calibration) if request.calibration is not None else 0
                fold = dataclasses.replace(request, calibration=images.folds[index][:size])
                built = self._convert(rung, directory / f"fold-{index}", fold)
            if isinstance(built, str):
                return Outcome(rung, error=built if index is None else f"{built} (calibrated on half the images)")
            builds.append((directory if index is None else directory / f"fold-{index}", *built))
        runners = [self._runner(rung, where, model_file) for where, model_file, _ in builds]
        outputs = run_batched(runners[0].run, images.inputs, 8, self.progress, rung.backend)
        where, model_file, facts = builds[0]
        self.built[rung] = Candidate(where, model_file, facts, outputs, final=not folded)
        correct = reference_correct = None
        judged = self._guard_outputs(runners)
        guard = None if judged is None else Agreement.of(*judged)
        if images.labels is not None:
            correct = tuple((outputs.argmax(1) == images.labels).tolist())
            reference_correct = tuple((images.reference.argmax(1) == images.labels).tolist())
        sensitivity: tuple[float, ...] = ()
        if images.sensitivity is not None and images.sensitivity_reference is not None:
            sensitivity = _relative_error(
                images.sensitivity_reference, run_batched(runners[0].run, images.sensitivity, 8)
            )
        return Outcome(rung, judged, guard, correct, reference_correct, sensitivity)

    def _guard_outputs(self, runners: Sequence[Runner]) -> tuple[np.ndarray, np.ndarray] | None:
        """(FP32's outputs, the rung's) on the guard's images: the held-out images through its one build, or,
        cross-fitted, each fold through the build calibrated on the other fold; None without guard images."""
        images = self.images
        if images.folds is not None and images.fold_references is not None:
            judged = [run_batched(runners[0].run, images.folds[1], 8), run_batched(runners[1].run, images.folds[0], 8)]
            return np.concatenate([images.fold_references[1], images.fold_references[0]]), np.concatenate(judged)
        if images.held_out is None or images.held_out_reference is None:
            return None
        return images.held_out_reference, run_batched(runners[0].run, images.held_out, 8)

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
        """Copy the chosen candidate's files into the bundle's staging directory; (it, a runner on the copy).
        A cross-fitted rung's build that ships is made here, calibrated on all the images."""
        candidate = self.built[rung]
        if not candidate.final:
            directory = candidate.directory.parent / "final"
            built = self._convert(rung, directory, self._request(rung))
            if isinstance(built, str):  # both halves quantized; all of the images together did not
                raise EdgekitError(f"{rung.describe()}: {built}")
            model_file, facts = built
            outputs = run_batched(self._runner(rung, directory, model_file).run, self.images.inputs, 8)
            candidate = Candidate(directory, model_file, facts, outputs)
        backend = get_converter(rung.backend).backend
        for name in (candidate.model_file, *backend.companion_files(candidate.model_file)):
            shutil.copyfile(candidate.directory / name, stage / name)
        return candidate, self._runner(rung, stage, candidate.model_file)
