"""Which tensors of an ONNX file keep their data in other files (ONNX's external data).

A bundle's ONNX file carries its weights inside (compile takes external data in); a file that points elsewhere
is refused before any runtime sees it, because runtimes resolve those locations themselves: ONNX Runtime, given
bytes, against the working directory; TensorRT's parser against wherever the file lies. The `onnx` package is
not part of the device install (Python 3.8 boards, size), so this reads the few fields of ONNX's published
protobuf schema (onnx.proto3) that can hold a tensor, in protobuf's wire format; tests check the field numbers
against onnx's own descriptors and the verdict against onnx's `uses_external_data` on files onnx wrote.
"""

from __future__ import annotations

from typing import Any, Iterator, NamedTuple

# Message → {field number: the message it holds}, for every path from a model down to a TensorProto.
_SCHEMA: dict[str, dict[int, str]] = {
    "ModelProto": {7: "GraphProto", 25: "FunctionProto", 20: "TrainingInfoProto"},
    "TrainingInfoProto": {1: "GraphProto", 2: "GraphProto"},
    "GraphProto": {1: "NodeProto", 5: "TensorProto", 15: "SparseTensorProto"},
    "FunctionProto": {7: "NodeProto", 11: "AttributeProto"},
    "NodeProto": {5: "AttributeProto"},
    "AttributeProto": {
        5: "TensorProto",
        6: "GraphProto",
        10: "TensorProto",
        11: "GraphProto",
        22: "SparseTensorProto",
        23: "SparseTensorProto",
    },
    "SparseTensorProto": {1: "TensorProto", 2: "TensorProto"},
}
TENSOR_NAME, TENSOR_EXTERNAL_DATA, TENSOR_DATA_LOCATION = 8, 13, 14
ENTRY_KEY, ENTRY_VALUE = 1, 2
EXTERNAL = 1  # TensorProto.DataLocation.EXTERNAL
MAX_DEPTH = 64  # subgraphs nest (If/Loop bodies); protobuf's own parser stops at 100


class NotOnnx(ValueError):
    """The bytes are not a protobuf message of ONNX's shape."""


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= len(data) or shift > 63:
            raise NotOnnx("truncated or overlong varint")
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, at


def _fields(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value): an int for varints, (start, end) of a length-delimited field."""
    at = start
    while at < end:
        key, at = _varint(data, at)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, at = _varint(data, at)
            yield number, wire, value
        elif wire == 2:
            length, at = _varint(data, at)
            if at + length > end:
                raise NotOnnx("a field runs past its message")
            yield number, wire, (at, at + length)
            at += length
        elif wire in (1, 5):
            at += 8 if wire == 1 else 4
            if at > end:
                raise NotOnnx("a fixed-size field runs past its message")
        else:  # groups (3, 4) are not in ONNX's schema; 6 and 7 do not exist
            raise NotOnnx(f"wire type {wire} is not used by ONNX")


class ExternalTensor(NamedTuple):
    """A tensor whose data lives in another file, as the file says (not checked: that is the reader's job)."""

    name: str
    location: str
    offset: str  # decimal strings, as ONNX stores them; "" where not given
    length: str


def _tensor(data: bytes, start: int, end: int) -> ExternalTensor | None:
    name, entries, external = "", {}, False
    for number, wire, value in _fields(data, start, end):
        if number == TENSOR_NAME and wire == 2:
            name = _text(data, value)
        elif number == TENSOR_DATA_LOCATION and wire == 0:
            external = external or value == EXTERNAL
        elif number == TENSOR_EXTERNAL_DATA and wire == 2:
            external = True
            entry = {key: _text(data, v) for key, kind, v in _fields(data, *value) if kind == 2}
            entries[entry.get(ENTRY_KEY, "")] = entry.get(ENTRY_VALUE, "")
    if not external:
        return None
    return ExternalTensor(name, entries.get("location", ""), entries.get("offset", ""), entries.get("length", ""))


def _text(data: bytes, span: Any) -> str:
    return data[span[0] : span[1]].decode("utf-8", "replace")


def external_tensors(data: bytes) -> list[ExternalTensor]:
    """Every tensor whose data lives outside `data`, an ONNX model's bytes."""
    found: list[ExternalTensor] = []
    stack = [("ModelProto", 0, len(data), 0)]
    while stack:
        kind, start, end, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise NotOnnx("nested deeper than any real model")
        if kind == "TensorProto":
            tensor = _tensor(data, start, end)
            if tensor is not None:
                found.append(tensor)
            continue
        holds = _SCHEMA[kind]
        for number, wire, value in _fields(data, start, end):
            if wire == 2 and number in holds:
                stack.append((holds[number], *value, depth + 1))
    return found


def refuse_external_data(name: str, data: bytes) -> None:
    """BundleError when the ONNX file `name` (its bytes `data`) points at data in other files: the file a
    runtime is about to load must be all there is to it."""
    from edgekit.core.errors import BundleError

    try:
        tensors = external_tensors(data)
    except NotOnnx:
        return  # not a well-formed model: the runtime's own parser says so, in its words
    if tensors:
        first = tensors[0]
        raise BundleError(
            f"{name} keeps the data of {len(tensors)} tensor(s) in other files (first: {first.name!r} in "
            f"{first.location!r}), which a runtime would read from outside the bundle; edgekit bundles carry "
            "their weights inside the model file: recompile the bundle from the original model"
        )
