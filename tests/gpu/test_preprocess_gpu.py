"""The fused preprocessing kernel on a real GPU: bit-identical to its CPU reference (which tests/test_kernels.py
checks against PIL and torchvision), for every layout, pitch, dtype and batch shape, whichever way it was
compiled. Its speed is a benchmark, not a test: benchmarks/gpu/preprocess_bench.py (tests never time).

Skipped, with the reason, where cuda-python cannot use a GPU.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgekit.backends.tensorrt.kernels import toolchain as build
from edgekit.backends.tensorrt.kernels.cpu_reference import reference_preprocess
from edgekit.backends.tensorrt.kernels.launch import CudaPreprocessor, gpu_unavailable_reason
from edgekit.data.preprocess import PreprocessSpec
from tests.photos import sample_photos, torchvision_eval

_REASON = gpu_unavailable_reason()
pytestmark = pytest.mark.skipif(_REASON is not None, reason=_REASON or "")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def gpu() -> Iterator[CudaPreprocessor]:
    with CudaPreprocessor(PreprocessSpec()) as pre:  # no bundled binary: compiled by NVRTC for this GPU
        yield pre


@pytest.mark.parametrize("name", ["china", "flower", "mosaic"])
def test_real_photos_match_the_reference_exactly_and_torchvision(gpu: CudaPreprocessor, name: str) -> None:
    photo = sample_photos()[name]
    ours = gpu.preprocess_arrays([photo])[0]
    np.testing.assert_array_equal(ours, reference_preprocess(photo, gpu.spec))
    error = np.abs(ours - torchvision_eval(photo, gpu.spec))
    assert (error * 255 * np.asarray(gpu.spec.std)[:, None, None]).max() < 1e-3  # in uint8 steps; target 1


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("pitch_padding", [0, 3, 64])
def test_one_call_mixes_layouts_sizes_and_pitches(gpu: CudaPreprocessor, dtype: str, pitch_padding: int) -> None:
    """35 images (two launches) of 7 sizes and 5 layouts into one tensor at batch offset 1."""
    rng = np.random.default_rng(pitch_padding)
    photo = Image.fromarray(sample_photos()["flower"])
    sizes = [(640, 427), (1, 1), (13, 300), (300, 13), (225, 224), (1920, 1080), (57, 91)]
    layouts = ["RGB", "BGR", "RGBA", "BGRA", "L", "RGB"]
    images, names = [], []
    for k in range(35):
        width, height = sizes[k % len(sizes)]
        base = np.asarray(photo.resize((width, height), Image.Resampling.BILINEAR))
        name = layouts[k % len(layouts)]
        pixels = {
            "RGB": base,
            "BGR": base[:, :, ::-1],
            "RGBA": np.dstack([base, rng.integers(0, 256, (height, width), dtype=np.uint8)]),
            "BGRA": np.dstack([base[:, :, ::-1], np.zeros((height, width), np.uint8)]),
            "L": base[:, :, 1],
        }[name]
        images.append(np.ascontiguousarray(pixels))
        names.append(name)
    out = gpu.preprocess_arrays(images, pixel_layout=names, dtype=dtype, pitch_padding=pitch_padding, first=1)
    assert out.shape == (36, 3, 224, 224) and out.dtype == np.dtype(dtype)
    assert np.isnan(out[0].astype(np.float32)).all()  # slot 0 was not ours to write
    pairs = zip(images, names, strict=True)
    expected = np.stack([reference_preprocess(i, gpu.spec, pixel_layout=n, dtype=dtype) for i, n in pairs])
    np.testing.assert_array_equal(out[1:], expected)


@pytest.mark.parametrize(
    ("spec", "transform_input"),
    [
        (PreprocessSpec(), True),
        (PreprocessSpec(resize=110, crop=96, mean=(0.5, 0.4, 0.3), std=(0.2, 0.3, 0.4)), False),
        (PreprocessSpec(interpolation="bicubic"), False),
        (PreprocessSpec(interpolation="nearest"), True),
    ],
)
def test_other_specs(spec: PreprocessSpec, transform_input: bool) -> None:
    photos = list(sample_photos().values())
    with CudaPreprocessor(spec, transform_input=transform_input) as pre:
        out = pre.preprocess_arrays(photos)
    expected = [reference_preprocess(p, spec, transform_input=transform_input) for p in photos]
    np.testing.assert_array_equal(out, np.stack(expected))


def test_aot_cubin_and_fatbin_load_and_agree_with_nvrtc(gpu: CudaPreprocessor) -> None:
    nvcc = build.find_nvcc()
    if nvcc is None or gpu.sm not in build.nvcc_targets(nvcc):
        pytest.skip(f"no nvcc that targets sm_{gpu.sm} on this machine: only the NVRTC path is tested")
    photo = sample_photos()["mosaic"]
    expected = gpu.preprocess_arrays([photo])
    aot = build.build_aot([gpu.sm])
    for binaries in (aot.cubins, build.nvcc_fatbin([gpu.sm])):
        with CudaPreprocessor(gpu.spec, binaries=binaries) as pre:
            assert pre.kernel_origin.startswith("bundled")
            np.testing.assert_array_equal(pre.preprocess_arrays([photo]), expected)
    with CudaPreprocessor(gpu.spec, binaries={gpu.sm + 1000: b"not a cubin"}) as pre:  # nothing fits: NVRTC
        assert pre.kernel_origin.startswith("NVRTC") and "no bundled cubin" in pre.kernel_origin
