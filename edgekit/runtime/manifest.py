"""The bundle's manifest as one typed, validated record.

`manifest.json` is read from a directory that may come from anywhere, so it is parsed under caps (size,
nesting depth, number length), then every field the runtime acts on is checked for type, range and
consistency before anything is loaded. Any violation is one BundleError naming the field. Sections the
runtime only reports (source, accuracy, quantization, pruning, …) are kept as validated JSON and reached
through `section()`; a backend checks the sections it reads itself (`Backend.manifest_problem`).

Checks are hand-written rather than a schema library's: the device side must stay small and run on
Python 3.8 (JetPack 5), and the checks that matter most (paths inside the bundle, every loaded file
hashed, classes matching the model) are not expressible in a plain JSON schema anyway.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import re
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

from edgekit.backends.registry import RUNTIMES
from edgekit.core.errors import BundleError, EdgekitError
from edgekit.data.preprocess import PreprocessSpec

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = 8 << 20  # a real manifest is a few kB; a confusion matrix of 1,000 classes is ~4 MB
MAX_DEPTH = 16  # real manifests nest 6 deep
MAX_NUMBER_CHARS = 40  # a double prints in < 25 characters; longer numbers are an attack on int()
MAX_FILES = 1000
MAX_CLASSES = 100_000
MAX_THREADS = 4096
MAX_BATCH = 4096
MAX_INPUT_SIDE = 8192
PRECISIONS = ("fp32", "fp16", "int8")
OUTPUT_KINDS = ("logits", "probabilities", "log-probabilities")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def _fail(field: str, problem: str) -> BundleError:
    return BundleError(f"{MANIFEST}: {field} {problem}; recompile the bundle with `edgekit compile`")


def parse_json(text: str, what: str = MANIFEST) -> Any:
    """JSON with caps on number length, nesting and special floats: a hostile file gets one error."""

    def number(kind: type) -> Any:
        def parse(token: str) -> Any:
            if len(token) > MAX_NUMBER_CHARS:
                raise ValueError(f"a number of {len(token)} characters")
            value = kind(token)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{token} is out of range")
            return value

        return parse

    def constant(token: str) -> Any:
        raise ValueError(f"{token} is not a JSON number")

    if _nesting_depth(text) > MAX_DEPTH:
        raise BundleError(f"{what} nests deeper than {MAX_DEPTH} levels; it is not an edgekit manifest")
    try:
        return json.loads(text, parse_int=number(int), parse_float=number(float), parse_constant=constant)
    except ValueError as exc:  # json.JSONDecodeError is a ValueError, as are the number checks above
        raise BundleError(f"{what} is unreadable or not JSON ({exc}); recompile the bundle") from None


def _nesting_depth(text: str) -> int:
    """The deepest bracket nesting outside strings, found without recursion (json.loads would overflow)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def bundle_member(name: Any, field: str) -> str:
    """`name` if it is a plain relative path inside the bundle, else the error naming `field`."""
    if not isinstance(name, str) or not name or len(name) > 255:
        raise _fail(field, "must be a file name inside the bundle")
    path = PurePosixPath(name)
    if (
        path.is_absolute()
        or "\\" in name
        or "\x00" in name
        or any(part in ("", ".", "..") for part in name.split("/"))
        or str(path) != name
    ):
        raise _fail(field, f"{name!r} is not a plain relative path inside the bundle")
    if name == MANIFEST:
        raise _fail(field, f"cannot name {MANIFEST} itself")
    return name


def _get(data: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str = "") -> Any:
    field = f"{where}{key}"
    if key not in data:
        raise _fail(field, "is missing")
    value = data[key]
    if (kind is int and isinstance(value, bool)) or not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise _fail(field, f"must be {names.replace('str', 'a string').replace('dict', 'an object')}")
    return value


def _int(data: Mapping[str, Any], key: str, low: int, high: int, where: str = "") -> int:
    value = _get(data, key, int, where)
    if not low <= value <= high:
        raise _fail(f"{where}{key}", f"must be within {low}..{high} (got {value})")
    return int(value)


def _choice(data: Mapping[str, Any], key: str, choices: tuple[str, ...], where: str = "") -> str:
    value = _get(data, key, str, where)
    if value not in choices:
        raise _fail(f"{where}{key}", f"must be one of {', '.join(choices)} (got {value[:40]!r})")
    return str(value)


@dataclasses.dataclass(frozen=True)
class InputSpec:
    name: str
    batch: int | None  # None: any batch size; else the model's fixed batch
    channels: int
    height: int
    width: int
    layout: str = "NCHW"  # "NHWC": uint8 pixels, the model normalises them (preprocessing.normalise_in_model)

    @property
    def shape(self) -> list[int | None]:
        if self.layout == "NHWC":
            return [self.batch, self.height, self.width, self.channels]
        return [self.batch, self.channels, self.height, self.width]


@dataclasses.dataclass(frozen=True)
class SourceRecord:
    """A model file the bundle was made from: where it was, and its sha256 (to find it again)."""

    path: str
    file_name: str
    sha256: str

    @classmethod
    def from_dict(cls, data: Any, field: str) -> SourceRecord:
        if not isinstance(data, dict):
            raise _fail(field, "must be an object")
        digest = _get(data, "sha256", str, f"{field}.")
        if not _SHA256.fullmatch(digest):
            raise _fail(f"{field}.sha256", "must be a sha256 (64 lowercase hex digits)")
        path = _get(data, "path", str, f"{field}.")
        return cls(path, str(data.get("file_name") or PurePosixPath(path).name), digest)


@dataclasses.dataclass(frozen=True)
class Manifest:
    """What a bundle is: the typed fields every stage acts on, and the rest kept as checked JSON."""

    schema_version: int
    edgekit_version: str
    backend: str
    precision: str
    execution_precision: str
    model_file: str
    classes: tuple[str, ...]
    preprocessing: PreprocessSpec
    input: InputSpec
    output_kind: str
    target_name: str
    target_kind: str
    threads: int  # 0 = all cores
    files: Mapping[str, str]  # bundle-relative name → sha256 of every file the bundle may load
    source: SourceRecord  # the user's model this bundle was compiled from
    original: SourceRecord | None  # for a pruned model, the model it was pruned from
    transform_input: bool | None  # torchvision's transform_input flag of the source model, where known
    _data: Mapping[str, Any] = dataclasses.field(repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: Any) -> Manifest:
        if not isinstance(data, dict):
            raise _fail("the top level", "must be a JSON object")
        version = _get(data, "schema_version", int)
        if version != SCHEMA_VERSION:
            raise BundleError(
                f"the bundle uses bundle schema {version}, this edgekit reads schema {SCHEMA_VERSION}; "
                "recompile it with this edgekit version"
            )
        files = _get(data, "files", dict)
        if not files or len(files) > MAX_FILES:
            raise _fail("files", f"must list 1..{MAX_FILES} files")
        for name, digest in files.items():
            bundle_member(name, f"files[{name[:60]!r}]")
            if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
                raise _fail(f"files[{name!r}]", "must be a sha256 (64 lowercase hex digits)")
        model_file = bundle_member(_get(data, "model_file", str), "model_file")
        if model_file not in files:
            raise _fail("model_file", f"{model_file!r} is not listed in files, so it cannot be verified")
        classes = _get(data, "classes", list)
        if not 1 <= len(classes) <= MAX_CLASSES or not all(isinstance(c, str) and len(c) <= 1000 for c in classes):
            raise _fail("classes", f"must be a list of 1..{MAX_CLASSES} strings")
        model = data.get("model")
        if isinstance(model, dict) and "num_classes" in model and model["num_classes"] != len(classes):
            raise _fail("classes", f"has {len(classes)} names but the model has {model['num_classes']} outputs")
        try:
            preprocessing = PreprocessSpec.from_dict(_get(data, "preprocessing", dict))
        except (EdgekitError, TypeError, ValueError) as exc:
            raise _fail("preprocessing", f"is invalid ({exc})") from None
        section = _get(data, "input", dict)
        shape = _get(section, "shape", list, "input.")
        # The layout follows from the preprocessing: a model that normalises itself takes NHWC uint8 pixels.
        layout, dtype = preprocessing.input_layout, preprocessing.input_dtype.__name__
        wanted = "[batch or null, height, width, 3]" if layout == "NHWC" else "[batch or null, 3, height, width]"
        if len(shape) != 4 or not all(v is None or (isinstance(v, int) and not isinstance(v, bool)) for v in shape):
            raise _fail("input.shape", f"must be {wanted}")
        if section.get("layout", "NCHW") != layout or section.get("dtype", "float32") != dtype:
            raise _fail("input", f"must be {layout} {dtype}, as preprocessing.normalise_in_model says")
        batch, channels, height, width = shape if layout == "NCHW" else (shape[0], shape[3], shape[1], shape[2])
        if (batch is not None and not 1 <= batch <= MAX_BATCH) or channels != 3:
            raise _fail("input.shape", f"must have a batch of 1..{MAX_BATCH} or null and 3 channels")
        if not (height == width == preprocessing.crop and height <= MAX_INPUT_SIDE):
            raise _fail("input.shape", f"must be {preprocessing.crop}×{preprocessing.crop}, the preprocessing crop")
        target = _get(data, "target", dict)
        backend = _get(data, "backend", str)
        if backend not in RUNTIMES:
            known = ", ".join(RUNTIMES)
            raise _fail("backend", f"{backend[:40]!r} is not one this edgekit runs ({known})")
        pruning = data.get("pruning")
        original = pruning.get("source") if isinstance(pruning, dict) else None
        model_section = model if isinstance(model, dict) else {}
        transform_input = model_section.get("transform_input")
        if transform_input is not None and not isinstance(transform_input, bool):
            raise _fail("model.transform_input", "must be true, false or null")
        return cls(
            schema_version=version,
            edgekit_version=_get(data, "edgekit_version", str)[:100],
            backend=backend,
            precision=_choice(data, "precision", PRECISIONS),
            execution_precision=_get(data, "execution_precision", str),
            model_file=model_file,
            classes=tuple(classes),
            preprocessing=preprocessing,
            input=InputSpec(_get(section, "name", str, "input."), batch, channels, height, width, layout),
            output_kind=_choice(_get(data, "output", dict), "kind", OUTPUT_KINDS, "output."),
            target_name=_get(target, "name", str, "target."),
            target_kind=_choice(target, "kind", ("cpu", "gpu"), "target."),
            threads=_int(target, "threads", 0, MAX_THREADS, "target."),
            files=dict(files),
            source=SourceRecord.from_dict(data.get("source"), "source"),
            original=None if original is None else SourceRecord.from_dict(original, "pruning.source"),
            transform_input=transform_input,
            _data=data,
        )

    def section(self, name: str) -> dict[str, Any]:
        """A reported section (accuracy, quantization, pruning, …) as a JSON object, empty where the bundle
        has none; a copy, so the record cannot be changed through it."""
        value = self._data.get(name)
        if value is not None and not isinstance(value, dict):
            raise _fail(name, "must be an object")
        return copy.deepcopy(value or {})

    def has(self, name: str) -> bool:
        return name in self._data

    def to_dict(self) -> dict[str, Any]:
        """The JSON the bundle writer wrote (a copy)."""
        return copy.deepcopy(dict(self._data))

    def replace(self, **sections: Any) -> dict[str, Any]:
        """This manifest's JSON with `sections` set: the draft the bundle writer turns into a new Manifest."""
        return {**self.to_dict(), **sections}
