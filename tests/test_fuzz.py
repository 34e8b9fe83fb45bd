"""Property-based fuzzing (hypothesis) of the two readers of untrusted files: the bundle manifest and images.

Invariant: a correct result or an EdgekitError (the CLI's exit 2 with one line) — never another exception
(a traceback), and never a file outside the bundle opened. Bounded: a fixed number of examples, no deadline
(the machine is shared), derandomized so that CI runs the same examples every time.
"""

from __future__ import annotations

import io
import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is a dev dependency (make setup installs it)")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from PIL import Image  # noqa: E402

import edgekit  # noqa: E402
from edgekit.core.errors import EdgekitError  # noqa: E402
from edgekit.data.images import read_image  # noqa: E402
from edgekit.runtime.bundle import read_manifest  # noqa: E402

FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)

_opened: list[str] | None = None


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _opened is not None and event == "open" and isinstance(args[0], (str, bytes)):
        _opened.append(args[0].decode(errors="replace") if isinstance(args[0], bytes) else args[0])


sys.addaudithook(_audit)  # audit hooks cannot be removed: this one records only while a check runs


class _OpenedFiles:
    def __enter__(self) -> list[str]:
        global _opened
        _opened = []
        return _opened

    def __exit__(self, *exc: object) -> None:
        global _opened
        _opened = None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _paths(child, (*prefix, index))


@pytest.fixture(scope="module")
def manifest_json(bundle: Path) -> dict[str, Any]:
    return json.loads((bundle / "manifest.json").read_text())


@st.composite
def mutated_manifests(draw: st.DrawFn, manifest: dict[str, Any]) -> bytes:
    """A real manifest with one to three fields replaced, deleted or renamed, or raw bytes."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=200))
    data = json.loads(json.dumps(manifest))
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(data) if p]
        path = draw(st.sampled_from(paths))
        parent = data
        for key in path[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["replace", "delete", "path"]))
        if action == "delete" and isinstance(parent, dict):
            del parent[path[-1]]
        elif action == "path":  # names that try to leave the bundle
            parent[path[-1]] = draw(st.sampled_from(["../model.onnx", "/etc/passwd", "a/../../b", "./model.onnx", ""]))
        else:
            parent[path[-1]] = draw(json_values)
    return json.dumps(data).encode()


def _inside(name: str, bundle: Path) -> bool:
    """An opened path is the bundle directory, a name relative to it (opened via its descriptor), or
    something of the Python installation (lazy imports)."""
    path = Path(name)
    if not path.is_absolute():
        return ".." not in path.parts
    return (
        path == bundle or bundle in path.parents or any(str(path).startswith(p) for p in (sys.prefix, sys.base_prefix))
    )


@given(data=st.data())
@FUZZ
def test_fuzzed_manifest_loads_or_is_refused_with_a_user_error(
    data: st.DataObject, bundle: Path, manifest_json: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> None:
    copy = tmp_path_factory.mktemp("fuzz") / "bundle"
    shutil.copytree(bundle, copy)
    (copy.parent / "model.onnx").write_bytes(b"honeypot outside the bundle")
    (copy / "manifest.json").write_bytes(data.draw(mutated_manifests(manifest_json)))
    with _OpenedFiles() as opened:
        try:
            manifest = read_manifest(copy, verify=True)
        except EdgekitError:
            manifest = None
    outside = [name for name in opened if not _inside(name, copy)]
    assert not outside, outside
    if manifest is not None:
        assert manifest.model_file in manifest.files and len(manifest.classes) >= 1
    shutil.rmtree(copy.parent)


@given(data=st.data())
@settings(FUZZ, max_examples=25)
def test_fuzzed_manifest_never_crashes_loading_and_predicting(
    data: st.DataObject,
    bundle: Path,
    manifest_json: dict[str, Any],
    image: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    copy = tmp_path_factory.mktemp("fuzz-load") / "bundle"
    shutil.copytree(bundle, copy)
    (copy / "manifest.json").write_bytes(data.draw(mutated_manifests(manifest_json)))
    try:
        prediction = edgekit.load(copy).predict([image])[0]
    except EdgekitError:
        pass
    else:
        assert prediction.label is not None
    shutil.rmtree(copy.parent)


def _encoded(image: Image.Image, form: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=form)
    return buffer.getvalue()


@st.composite
def image_files(draw: st.DrawFn) -> bytes:
    """Real encodings of random small images, then truncated or with bytes overwritten; or raw bytes."""
    if draw(st.integers(0, 5)) == 0:
        return draw(st.binary(max_size=300))
    mode = draw(st.sampled_from(["RGB", "L", "RGBA", "P", "I;16", "1", "CMYK", "LA", "I", "F"]))
    form = draw(st.sampled_from(["PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP", "PPM"]))
    size = (draw(st.integers(1, 40)), draw(st.integers(1, 40)))
    image = Image.new(mode, size, color=draw(st.integers(0, 255)) if mode not in ("RGB", "RGBA", "CMYK") else None)
    try:
        data = bytearray(_encoded(image, form))
    except (OSError, ValueError, KeyError):  # a mode this format cannot store: raw bytes instead
        return draw(st.binary(max_size=300))
    for _ in range(draw(st.integers(0, 3))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


@given(payload=image_files())
@FUZZ
def test_fuzzed_image_decodes_to_rgb_or_is_reported(payload: bytes, tmp_path_factory: pytest.TempPathFactory) -> None:
    path = tmp_path_factory.mktemp("img") / "image.png"
    path.write_bytes(payload)
    try:
        image = read_image(path)
    except ValueError as exc:  # the per-image error predict reports beside the other images
        assert str(exc)
    else:
        assert image.mode == "RGB" and image.width >= 1 and image.height >= 1
