"""Running a bundle: `edgekit.load(bundle).predict(images)`.

Needs only NumPy, PIL and the bundle's runtime (ONNX Runtime, OpenVINO, LiteRT or TensorRT: the run half of
its backend, `backends/registry.py`), never torch.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import itertools
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from PIL import Image

from edgekit.backends.base import Backend, ModelFiles
from edgekit.backends.registry import RUNTIMES, get_backend, reference_backend
from edgekit.core.errors import BundleError, EdgekitError
from edgekit.core.threads import resolve_threads
from edgekit.data.images import read_image, to_rgb
from edgekit.data.preprocess import PreprocessSpec, preprocess, preprocess_batch
from edgekit.runtime.bundle import read_manifest, read_verified
from edgekit.runtime.isolate import isolation_enabled, run_in_child
from edgekit.runtime.manifest import Manifest

T = TypeVar("T")
R = TypeVar("R")


def to_probabilities(outputs: np.ndarray, output_kind: str) -> np.ndarray:
    outputs = outputs.astype(np.float64, copy=False).reshape(outputs.shape[0], -1)
    if output_kind == "probabilities":
        return outputs
    if output_kind == "log-probabilities":
        return np.exp(outputs)
    shifted = np.exp(outputs - outputs.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


class Runner:
    """A loaded backend plus the model's interface: splits batches for static-batch models. Safe to call
    from several threads at once (every backend guarantees that for `run` and `run_images`)."""

    def __init__(
        self,
        backend: type[Backend],
        model: ModelFiles,
        threads: int,
        static_batch: int | None,
        precision: str = "fp32",
        options: Mapping[str, Any] | None = None,
    ) -> None:
        self.backend_name = backend.name
        self.static_batch = static_batch
        self._backend = backend(model, resolve_threads(threads), precision, options)

    def execution_precision(self) -> str:
        return self._backend.execution_precision()

    @property
    def input_errors(self) -> tuple[type[BaseException], ...]:
        return self._backend.input_errors()

    @property
    def preprocesses_on_device(self) -> bool:
        """Whether `run_images` preprocesses on the accelerator (else callers preprocess on the CPU)."""
        return self._backend.preprocesses_on_device

    def device_ms(self) -> float | None:
        """Accelerator time of the last batch (GPU backends), else None."""
        return self._backend.device_ms()

    def stage_ms(self) -> dict[str, float]:
        return self._backend.stage_ms()

    def run_images(self, images: Sequence[Image.Image], spec: PreprocessSpec) -> np.ndarray | None:
        """Outputs for decoded RGB images, preprocessed on the accelerator; None where the backend cannot."""
        arrays = [np.asarray(image, dtype=np.uint8) for image in images]
        if self.static_batch not in (None, len(arrays)):
            if self.static_batch != 1:
                return None
            outputs = [self._backend.run_images(arrays[i : i + 1], spec) for i in range(len(arrays))]
            return None if any(o is None for o in outputs) else np.concatenate(outputs)  # type: ignore[arg-type]
        return self._backend.run_images(arrays, spec)

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Raw first output for a batch of any size: float32 NCHW, or uint8 NHWC pixels for a model that
        normalises itself (the model refuses the other kind: `input_errors`)."""
        batch = np.ascontiguousarray(batch, dtype=np.uint8 if batch.dtype == np.uint8 else np.float32)
        if self.static_batch is None or len(batch) == self.static_batch:
            return self._backend.run(batch)
        if self.static_batch != 1:
            raise EdgekitError(f"the model has a fixed batch of {self.static_batch}; pass batches of that size")
        return np.concatenate([self._backend.run(batch[i : i + 1]) for i in range(len(batch))])


def default_decode_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def ordered_map(function: Callable[[T], R], items: Iterable[T], workers: int, ahead: int) -> Iterator[R]:
    """`map(function, items)` on `workers` threads, in order, at most `ahead` results computed but not yet
    taken (memory stays bounded on a folder of any size). Stopping early cancels what has not started."""
    if workers <= 1:
        yield from map(function, items)
        return
    pending: collections.deque[concurrent.futures.Future[R]] = collections.deque()
    source = iter(items)
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="edgekit-decode") as pool:
        try:
            for item in itertools.islice(source, max(1, ahead)):
                pending.append(pool.submit(function, item))
            while pending:
                result = pending.popleft().result()
                for item in itertools.islice(source, 1):
                    pending.append(pool.submit(function, item))
                yield result
        finally:
            for future in pending:  # Python 3.8 has no shutdown(cancel_futures=True)
                future.cancel()


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _portable(manifest: Manifest) -> bool:
    """A portable bundle's ONNX file (TensorRT's) was checked with the reference runtime at compile time, so it
    may run there too."""
    backend = RUNTIMES.get(manifest.backend)
    return backend is not None and backend.capabilities.portable_onnx and manifest.model_file.endswith(".onnx")


@dataclasses.dataclass(frozen=True)
class Prediction:
    file: str | None
    index: int | None = None
    label: str | None = None
    prob: float | None = None
    top_k: tuple[tuple[int, str, float], ...] = ()
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        if self.error is not None:
            return {"file": self.file, "error": self.error}
        return {
            "file": self.file,
            "index": self.index,
            "label": self.label,
            "prob": self.prob,
            "top_k": [{"index": i, "label": label, "prob": p} for i, label, p in self.top_k],
        }


class BundleModel:
    """A verified bundle, loaded into its backend (or another one that supports its precision)."""

    def __init__(
        self,
        path: Path,
        manifest: Manifest,
        backend: str | None,
        threads: int | None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        self.path = path
        self.manifest = manifest
        self.class_names: tuple[str, ...] = manifest.classes
        self.preprocessing = manifest.preprocessing
        self.output_kind = manifest.output_kind
        backend_cls = get_backend(backend or manifest.backend)
        reason = backend_cls.unavailable_reason()
        if reason:
            hint = (
                f" (or pass --backend {reference_backend().name} to run its ONNX file on the CPU)"
                if _portable(manifest)
                else ""
            )
            raise EdgekitError(f"cannot run {path}: {reason}{hint}")
        if backend_cls.name != manifest.backend and not manifest.model_file.endswith(".onnx"):
            raise BundleError(f"{manifest.model_file} runs with {manifest.backend} only, not {backend_cls.name}")
        if backend_cls.name != manifest.backend and manifest.precision != "fp32" and not _portable(manifest):
            # An fp32 ONNX file runs anywhere; quantized files are made for their backend.
            raise BundleError(
                f"this {manifest.precision} bundle was built for {manifest.backend}, not {backend_cls.name}"
            )
        options = dict(options or {})
        if isolation_enabled():  # a native crash in the runtime's parser ends the child, not this process
            given_threads = "" if threads is None else str(threads)
            probe_args = [str(path), backend or "", given_threads, json.dumps(options)]
            run_in_child("edgekit.runtime.load_probe", probe_args, f"{path}/{manifest.model_file}")
        names = backend_cls.files_to_load(path, manifest, options)
        model = ModelFiles(names[0], {name: read_verified(path, manifest, name) for name in names})
        threads = manifest.threads if threads is None else threads
        self.runner = Runner(backend_cls, model, threads, manifest.input.batch, manifest.precision, options)
        self._check_outputs()

    def _check_outputs(self) -> None:
        """The model takes the manifest's input and gives one output per class: a manifest that does not
        fit its (hash-matching) model file is refused at load, not at the first prediction."""
        probe = self.preprocessing.blank_batch(self.manifest.input.batch or 1)
        try:
            width = int(np.prod(self.runner.run(probe).shape[1:]))
        except self.runner.input_errors as exc:
            detail = " ".join(str(exc).split())[:200]
            raise BundleError(
                f"the model in {self.path} does not take the input its manifest describes ({detail}); "
                "recompile the bundle"
            ) from None
        if width != len(self.class_names):
            raise BundleError(
                f"{self.path}/manifest.json names {len(self.class_names)} classes but the model has {width} "
                "outputs; recompile the bundle"
            )

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        backend: str | None = None,
        threads: int | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> BundleModel:
        """`options` are the backend's run options, e.g. TensorRT's `trust_engine_host_code`, `cuda_graph`."""
        path = Path(path)
        return cls(path, read_manifest(path, verify=True, trust=True), backend, threads, options)

    @property
    def backend(self) -> str:
        return self.runner.backend_name

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities [N, classes] for a preprocessed batch (`preprocess_batch`: float32 NCHW, or
        uint8 NHWC pixels for a model that normalises itself)."""
        return to_probabilities(self.runner.run(batch), self.output_kind)

    def _image_probabilities(self, images: list[Image.Image]) -> np.ndarray:
        """On the accelerator's own preprocessing where the backend has it (TensorRT), else PIL + NumPy."""
        outputs = self.runner.run_images(images, self.preprocessing)
        if outputs is None:
            return self.probabilities(preprocess_batch(images, self.preprocessing))
        return to_probabilities(outputs, self.output_kind)

    def predict(
        self, images: Sequence[str | os.PathLike[str] | Image.Image], top_k: int = 1, batch_size: int = 8
    ) -> list[Prediction]:
        """Top-k classes per image. Paths that cannot be read give a Prediction with `error` set."""
        return list(self.iter_predict(images, top_k=top_k, batch_size=batch_size))

    def iter_predict(
        self,
        images: Sequence[str | os.PathLike[str] | Image.Image],
        top_k: int = 1,
        batch_size: int = 8,
        decode_workers: int | None = None,
    ) -> Iterator[Prediction]:
        """Predictions in the order of `images`, `batch_size` at a time.

        Files are decoded (and, on a CPU backend, preprocessed) by `decode_workers` threads (default: up to
        4, the cores this machine has) while the network runs on the batch before: PIL releases the GIL
        while it decodes. At most two batches of decoded images are held at once, however many files.
        """
        top_k = max(1, min(top_k, len(self.class_names)))
        on_device = self.runner.preprocesses_on_device
        workers = default_decode_workers() if decode_workers is None else max(1, decode_workers)

        def decode(item: str | os.PathLike[str] | Image.Image) -> tuple[str | None, str | None, Any]:
            name = None if isinstance(item, Image.Image) else str(item)
            try:
                image = (
                    to_rgb(item)
                    if isinstance(item, Image.Image)
                    else read_image(item, scale_to=self.preprocessing.scale_to)
                )
            except ValueError as exc:
                return name, str(exc), None
            return name, None, image if on_device else preprocess(image, self.preprocessing)

        for chunk in batched(ordered_map(decode, images, workers, ahead=2 * batch_size), batch_size):
            decoded = [item for _, error, item in chunk if error is None]
            probs = iter(self._decoded_probabilities(decoded, on_device) if decoded else [])
            for name, error, _ in chunk:
                if error is not None:
                    yield Prediction(file=name, error=error)
                    continue
                row = next(probs)
                order = np.argsort(-row)[:top_k]
                ranked = tuple((int(i), self.class_names[int(i)], float(row[i])) for i in order)
                yield Prediction(file=name, index=ranked[0][0], label=ranked[0][1], prob=ranked[0][2], top_k=ranked)

    def _decoded_probabilities(self, decoded: list[Any], on_device: bool) -> np.ndarray:
        if on_device:
            return self._image_probabilities(decoded)
        return self.probabilities(np.stack(decoded))
