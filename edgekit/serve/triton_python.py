"""edgekit's models for Triton Inference Server's Python backend (`tritonserver`, NVIDIA's container, or the
binary PyTriton ships, which `edgekit serve` runs).

Two roles, set by the model's `edgekit_role` parameter in config.pbtxt:

- "model": encoded images in (`IMAGE`, UINT8, one file's bytes per row), class probabilities out
  (`PROBABILITIES`), through edgekit's runtime on the bundle in the version folder, verified as
  `edgekit.load` verifies it: any backend a bundle can have, LiteRT included.
- "preprocess": encoded images in, the bundle's input tensor out (decode and the exact or fast transform
  the bundle records), for an ensemble in front of a Triton-native model.

Tensors cross the backend through DLPack, never its NumPy conversion: the stub is built against NumPy 1's
array layout and misreads NumPy 2 arrays (a UINT8 image arrived as its first byte repeated; measured with the
stub PyTriton 0.7.0 ships). For the same reason images travel as UINT8, not BYTES (whose deserialiser fails
under NumPy 2); raw bytes need no length prefix either. A request that is not an image
(or is over the size limit) gets its own INVALID_ARG error (HTTP 400) while the other requests batched with it
are answered.

Triton imports this module inside its stub (`model.py` in the repository is a one-line shim), so it runs on
the device side's Python 3.8 too.
"""

from __future__ import annotations

import concurrent.futures
import json
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.core.errors import EdgekitError
from edgekit.data.images import decode_image
from edgekit.data.preprocess import PreprocessSpec, preprocess
from edgekit.runtime.bundle import read_manifest
from edgekit.runtime.model import BundleModel, default_decode_workers

IMAGE_INPUT = "IMAGE"
PROBABILITIES_OUTPUT = "PROBABILITIES"
BUNDLE_FOLDER = "bundle"  # inside the version folder: <repository>/<model>/1/bundle
DEFAULT_MAX_IMAGE_BYTES = 32 * 1024 * 1024  # a 100-megapixel JPEG is ~30 MB


class ImageDecoder:
    """Encoded image bytes → the bundle's input tensor, exactly as `edgekit predict` makes it."""

    def __init__(self, spec: PreprocessSpec, max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES) -> None:
        self.spec = spec
        self.max_image_bytes = max_image_bytes

    def tensor(self, row: np.ndarray) -> np.ndarray:
        """One request row (the file's bytes as UINT8) → one preprocessed image; ValueError says why not."""
        data = np.ascontiguousarray(row, dtype=np.uint8).tobytes()
        if len(data) > self.max_image_bytes:
            raise ValueError(f"the image is {len(data):,} bytes, over this server's limit of {self.max_image_bytes:,}")
        if not data:
            raise ValueError("the image is empty")
        image = decode_image(data, scale_to=self.spec.scale_to)
        return preprocess(image, self.spec)


def _parameters(config: dict[str, Any]) -> dict[str, str]:
    return {key: value.get("string_value", "") for key, value in (config.get("parameters") or {}).items()}


class TritonPythonModel:
    """The class Triton's Python backend instantiates (`initialize`, `execute`, `finalize`)."""

    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        parameters = _parameters(config)
        self.role = parameters.get("edgekit_role", "model")
        bundle = Path(args["model_repository"]) / args["model_version"] / BUNDLE_FOLDER
        limit = int(parameters.get("edgekit_max_image_bytes") or DEFAULT_MAX_IMAGE_BYTES)
        threads = int(parameters["edgekit_threads"]) if parameters.get("edgekit_threads") else None
        try:
            manifest = read_manifest(bundle, verify=True, trust=True)  # as edgekit.load reads it
            self.model = None if self.role == "preprocess" else BundleModel(bundle, manifest, None, threads)
        except EdgekitError as exc:  # Triton reports this as the model's load failure, in these words
            raise RuntimeError(f"edgekit cannot serve {bundle}: {exc}") from None
        self.decoder = ImageDecoder(manifest.preprocessing, limit)
        self.output = PROBABILITIES_OUTPUT if self.model is not None else config["output"][0]["name"]
        self._pool = concurrent.futures.ThreadPoolExecutor(default_decode_workers(), "edgekit-decode")

    def finalize(self) -> None:
        self._pool.shutdown(wait=True)

    def execute(self, requests: list[Any]) -> list[Any]:
        import triton_python_backend_utils as pb_utils

        inputs = [np.from_dlpack(pb_utils.get_input_tensor_by_name(r, IMAGE_INPUT)) for r in requests]
        # Decoded side by side, as `edgekit predict` decodes: PIL releases the GIL while it decodes.
        decoded_requests = list(self._pool.map(self._decode, inputs))
        tensors = [t if isinstance(t, list) else [] for t in decoded_requests]  # per request, its images' tensors
        errors = {i: t for i, t in enumerate(decoded_requests) if isinstance(t, str)}
        decoded = [tensor for request_tensors in tensors for tensor in request_tensors]
        outputs = self._run(np.stack(decoded)) if decoded else np.empty((0,))
        responses, start = [], 0
        for index, request_tensors in enumerate(tensors):
            if index in errors:
                error = pb_utils.TritonError(errors[index], pb_utils.TritonError.INVALID_ARG)
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=error))
                continue
            rows = outputs[start : start + len(request_tensors)]
            start += len(request_tensors)
            tensor = pb_utils.Tensor.from_dlpack(self.output, np.ascontiguousarray(rows))
            responses.append(pb_utils.InferenceResponse(output_tensors=[tensor]))
        return responses

    def _decode(self, rows: np.ndarray) -> list[np.ndarray] | str:
        """One request's images (one file per row) as tensors, or why they are not usable."""
        try:
            return [self.decoder.tensor(row) for row in rows.reshape(rows.shape[0], -1)]
        except ValueError as exc:
            return f"{IMAGE_INPUT} is not a usable image: {exc}"

    def _run(self, batch: np.ndarray) -> np.ndarray:
        if self.model is None:  # the preprocessing step of an ensemble: the tensors are the output
            return batch
        return self.model.probabilities(batch).astype(np.float32)
