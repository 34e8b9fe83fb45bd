"""compile's manifest, typed: what the pipeline knows of a bundle before the backend's finish adds its own
sections. `to_dict` is the draft that `Converter.finish_bundle` extends and `runtime.bundle.write_manifest`
validates exactly as a reader would (`runtime/manifest.py`), so the two sides share one set of names."""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgekit.core.versions import EDGEKIT_VERSION
from edgekit.data.preprocess import PreprocessSpec
from edgekit.export.onnx_file import OnnxInfo
from edgekit.targets import Target


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


@dataclasses.dataclass(frozen=True)
class ManifestDraft:
    source: Mapping[str, Any]  # what loading recorded: source (sha256), model, classes, pruning
    source_path: Path  # the user's file, as given
    spec: PreprocessSpec  # the preprocessing the shipped model takes
    info: OnnxInfo  # the FP32 export's interface: input and output names, batch, output kind
    model_file: str
    onnx_opset: int | None  # of the file shipped (None: not an ONNX file)
    precision: str
    execution_precision: str  # what the runtime computes in
    backend: str
    target: Target
    parity: Mapping[str, Any]
    selection: Mapping[str, Any]  # every build tried, and the one chosen
    tools: Mapping[str, str]
    quantization: Mapping[str, Any] | None = None
    sparsity: Mapping[str, Any] | None = None
    normalisation_check: Mapping[str, Any] | None = None
    created: str = dataclasses.field(default_factory=_now)

    def to_dict(self) -> dict[str, Any]:
        draft: dict[str, Any] = {
            "edgekit_version": EDGEKIT_VERSION,
            "created": self.created,
            **self.source,
            "source": {
                "path": str(self.source_path.resolve()),
                "file_name": self.source_path.name,
                **self.source["source"],  # its sha256 included: hashed once, when loaded
            },
            "model": {**self.source["model"], "output_kind": self.info.output_kind},
            "preprocessing": self.spec.to_dict(),
            "model_file": self.model_file,
            "input": {
                "name": self.info.input_name,
                "shape": self.spec.input_shape(self.info.batch),
                "dtype": self.spec.input_dtype.__name__,
                "layout": self.spec.input_layout,
            },
            "output": {"name": self.info.output_name, "kind": self.info.output_kind},
            "onnx_opset": self.onnx_opset,
            "precision": self.precision,
            "execution_precision": self.execution_precision,
            "backend": self.backend,
            "target": self.target.to_dict(),
            "parity": dict(self.parity),
            "selection": dict(self.selection),
            "tools": dict(self.tools),
        }
        optional = {
            "quantization": self.quantization,
            "sparsity": self.sparsity,
            "normalisation_check": self.normalisation_check,
        }
        draft.update({key: dict(value) for key, value in optional.items() if value is not None})
        return draft
