"""The GPU preprocessing kernel, checked on the CPU: its arithmetic (tensorrt/kernels/cpu_reference.py) equals PIL
exactly and torchvision to float rounding on real photos; the launcher, run against a fake driver on host
memory, feeds preprocess.cu itself (compiled as C++ for the CPU) parameters that make it reproduce the
reference bit for bit; and the source compiles for Jetson Orin (sm_87) and Hopper (sm_90) with nvcc and
with NVRTC. tests/gpu/ runs the same comparisons on a real GPU.
"""

from __future__ import annotations

import configparser
import ctypes
import enum
import functools
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from edgekit.backends.tensorrt.kernels import launch
from edgekit.backends.tensorrt.kernels import toolchain as build
from edgekit.backends.tensorrt.kernels.cpu_reference import (
    LAYOUTS,
    PRECISION_BITS,
    build_tables,
    normalisation,
    pad_rows,
    reference_preprocess,
    resample_crop,
)
from edgekit.core.errors import EdgekitError
from edgekit.data.fashion_mnist import dataset_root, load_split
from edgekit.data.preprocess import _INTERPOLATIONS, PreprocessSpec, resized_size
from tests.photos import sample_photos, torchvision_eval

ROOT = Path(__file__).resolve().parents[1]


def _pil_uint8(image: Image.Image, spec: PreprocessSpec) -> np.ndarray:
    """PIL's resize + torchvision's centre-crop offsets, before any float arithmetic."""
    resized = image.resize(resized_size(*image.size, spec.resize), _INTERPOLATIONS[spec.interpolation])
    left = round((resized.width - spec.crop) / 2.0)
    top = round((resized.height - spec.crop) / 2.0)
    return np.asarray(resized.crop((left, top, left + spec.crop, top + spec.crop)))


def _uint8_units(error: np.ndarray, spec: PreprocessSpec) -> float:
    """An error in normalised values expressed in uint8 steps (1 step = 1 / (255 * std) per channel)."""
    return float((np.abs(error) * 255.0 * np.asarray(spec.std)[:, None, None]).max())


def _assert_matches(pixels: np.ndarray, spec: PreprocessSpec, pixel_layout: str = "RGB", rgb: np.ndarray | None = None):
    """The reference on `pixels` equals PIL exactly in uint8 and torchvision to float rounding."""
    rgb = pixels if rgb is None else rgb
    image = Image.fromarray(rgb, "RGB")
    height, width = pixels.shape[:2]
    ours_u8 = resample_crop(pixels.reshape(-1), pixels[0].size, pixel_layout, build_tables(width, height, spec))
    np.testing.assert_array_equal(ours_u8, _pil_uint8(image, spec))
    ours = reference_preprocess(pixels, spec, pixel_layout=pixel_layout)
    assert ours.shape == (3, spec.crop, spec.crop) and ours.dtype == np.float32
    error = ours - torchvision_eval(image, spec)
    assert _uint8_units(error, spec) < 1e-3  # target: 1 step; float rounding only, as uint8 is exact
    assert np.abs(error).max() < 1e-5


@pytest.mark.parametrize("name", ["china", "flower", "mosaic"])
@pytest.mark.parametrize(
    "spec",
    [
        PreprocessSpec(),
        PreprocessSpec(resize=232, crop=224),
        PreprocessSpec(resize=64, crop=56, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)),  # 6.7-20× downscale
        PreprocessSpec(interpolation="bicubic"),
        PreprocessSpec(resize=110, crop=96, interpolation="nearest"),
    ],
    ids=["default", "232-224", "64-56", "bicubic", "nearest"],
)
def test_reference_equals_pil_and_torchvision_on_real_photos(name: str, spec: PreprocessSpec) -> None:
    _assert_matches(sample_photos()[name], spec)


def test_reference_on_fashion_mnist_upscaled() -> None:
    if not (dataset_root() / "t10k-images-idx3-ubyte.gz").exists():
        pytest.fail("Fashion-MNIST is missing: apt-get install -y dataset-fashion-mnist (make test does this)")
    images, _ = load_split("test")
    for grey in images[:12]:  # 28×28 → 256 upscale (no antialias widening), greyscale read as R = G = B
        rgb = np.repeat(grey[:, :, None], 3, axis=2)
        _assert_matches(np.ascontiguousarray(grey), PreprocessSpec(), "L", rgb)
        _assert_matches(rgb, PreprocessSpec(resize=72, crop=64))


def _textured(width: int, height: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 // max(width, 1), y * 255 // max(height, 1), (x * 7 + y * 3) % 256], axis=-1)
    return np.clip(base + rng.integers(-40, 40, base.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize(
    "size",
    [(1, 1), (2, 3), (13, 17), (7, 300), (300, 7), (224, 224), (256, 256), (257, 255), (333, 517), (1920, 1080)],
)
def test_reference_on_odd_portrait_tiny_and_identity_sizes(size: tuple[int, int]) -> None:
    _assert_matches(_textured(*size, seed=sum(size)), PreprocessSpec())


@pytest.mark.parametrize("pixel_layout", ["BGR", "RGBA", "BGRA"])
def test_other_channel_orders_read_the_same_pixels(pixel_layout: str) -> None:
    rgb = sample_photos()["flower"]
    order = [2, 1, 0] if pixel_layout.startswith("BGR") else [0, 1, 2]
    pixels = rgb[:, :, order]
    if pixel_layout.endswith("A"):
        alpha = np.random.default_rng(0).integers(0, 256, (*rgb.shape[:2], 1), dtype=np.uint8)
        pixels = np.concatenate([pixels, alpha], axis=2)  # alpha is ignored, as convert("RGB") does
    _assert_matches(np.ascontiguousarray(pixels), PreprocessSpec(), pixel_layout, rgb)


def test_pitched_rows_ignore_the_padding() -> None:
    rgb = sample_photos()["china"]
    spec = PreprocessSpec()
    plain = reference_preprocess(rgb, spec)
    for pitch in (640 * 3 + 1, 640 * 3 + 64, 2048):
        np.testing.assert_array_equal(reference_preprocess(rgb, spec, pitch=pitch), plain)
        padded = pad_rows(rgb, pitch, fill=255)
        assert np.all(padded[:, 640 * 3 :] == 255)
    with pytest.raises(EdgekitError, match="pitch"):
        reference_preprocess(rgb, spec, pitch=640 * 3 - 1)


def test_fp16_output_is_the_rounded_fp32_output() -> None:
    rgb, spec = sample_photos()["china"], PreprocessSpec()
    half = reference_preprocess(rgb, spec, dtype="float16")
    assert half.dtype == np.float16
    np.testing.assert_array_equal(half, reference_preprocess(rgb, spec).astype(np.float16))
    expected = torchvision_eval(Image.fromarray(rgb), spec)
    assert _uint8_units(half.astype(np.float32) - expected, spec) < 0.5  # fp16 keeps 11 bits: 2^-9 of ~2.6


@pytest.mark.parametrize("spec", [PreprocessSpec(), PreprocessSpec(mean=(0.5, 0.4, 0.3), std=(0.2, 0.3, 0.4))])
def test_transform_input_folds_into_the_normalisation(spec: PreprocessSpec) -> None:
    rgb = sample_photos()["flower"]
    net = torchvision.models.googlenet(weights=None, aux_logits=False, transform_input=True, init_weights=False)
    with torch.no_grad():
        expected = net._transform_input(torch.from_numpy(torchvision_eval(Image.fromarray(rgb), spec))[None])[0].numpy()
    ours = reference_preprocess(rgb, spec, transform_input=True)
    assert np.abs(ours - expected).max() < 1e-5
    if spec == PreprocessSpec():  # ImageNet normalisation then transform_input is v * 2/255 - 1
        scale, shift = normalisation(spec, transform_input=True)
        np.testing.assert_allclose(scale, 2 / 255, rtol=1e-6)
        np.testing.assert_allclose(shift, -1.0, rtol=1e-6)


def test_tables_cover_only_the_crop_and_sum_to_one() -> None:
    tables = build_tables(1920, 1080, PreprocessSpec())  # → 455×256, crop at (116, 16)
    assert tables.xbounds.shape == (224, 2) and tables.ybounds.shape == (224, 2)
    assert tables.kx == tables.ky == int(tables.xbounds[:, 1].max())  # trimmed to the widest window used
    for bounds, weights in ((tables.xbounds, tables.xweights), (tables.ybounds, tables.yweights)):
        assert np.all(np.abs(weights.sum(axis=1) - (1 << PRECISION_BITS)) <= weights.shape[1])
        assert np.all(weights[np.arange(weights.shape[1]) >= bounds[:, 1:2]] == 0)
    packed = tables.packed()
    assert packed.dtype == np.int32 and packed.size == 4 * 224 + 224 * (tables.kx + tables.ky)
    identity = build_tables(256, 300, PreprocessSpec())  # horizontal axis is not resized: copy columns
    assert np.all(identity.xweights[:, 0] == 1 << PRECISION_BITS) and np.all(identity.xweights[:, 1:] == 0)
    with pytest.raises(EdgekitError, match="layout"):
        reference_preprocess(sample_photos()["china"], PreprocessSpec(), pixel_layout="YUV")


# ---- the launcher's CPU-side parts -----------------------------------------------------------------


def test_ctypes_structs_match_the_kernel_source() -> None:
    source = build.kernel_source()
    assert int(re.search(r"#define EDGEKIT_MAX_IMAGES (\d+)", source).group(1)) == launch.MAX_IMAGES_PER_LAUNCH
    assert int(re.search(r"#define EDGEKIT_PRECISION_BITS (\d+)", source).group(1)) == PRECISION_BITS
    structs = {"EdgekitImage": launch.ImageDesc, "EdgekitParams": launch.LaunchParams}
    sizes = re.findall(r"sizeof\((\w+)\) == (\d+)", source)
    offsets = re.findall(r"__builtin_offsetof\((\w+), (\w+)\) == (\d+)", source)
    assert len(sizes) == 2 and len(offsets) == 12
    for struct, size in sizes:
        assert ctypes.sizeof(structs[struct]) == int(size)
    for struct, field, offset in offsets:
        assert getattr(structs[struct], field).offset == int(offset), (struct, field)


_HOST_HARNESS = """
#include <cstring>
#define EDGEKIT_HOST_EMULATION 1
#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(n)
struct Dim3 { unsigned x, y, z; };
static Dim3 blockIdx, threadIdx, blockDim;
template <typename T> static inline T __ldg(const T* p) { return *p; }
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline unsigned short edgekit_host_f32_to_f16(float v) {
    _Float16 h = (_Float16)v;  // round to nearest even, like cvt.rn.f16.f32
    unsigned short bits;
    std::memcpy(&bits, &h, 2);
    return bits;
}
#include "preprocess.cu"
extern "C" void edgekit_run(const EdgekitParams* p, int half, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                            unsigned by) {
    blockDim = {bx, by, 1};
    for (unsigned z = 0; z < gz; ++z) for (unsigned y = 0; y < gy; ++y) for (unsigned x = 0; x < gx; ++x)
        for (unsigned ty = 0; ty < by; ++ty) for (unsigned tx = 0; tx < bx; ++tx) {
            blockIdx = {x, y, z};
            threadIdx = {tx, ty, 0};
            if (half) edgekit_preprocess_f16(*p); else edgekit_preprocess_f32(*p);
        }
}
"""


@functools.cache
def _host_kernel() -> ctypes.CDLL | str:
    """preprocess.cu itself compiled as C++ for the CPU (CUDA built-ins stubbed; IEEE float without FMA
    contraction, like __fmul_rn/__fadd_rn), or why not."""
    compiler = shutil.which("g++") or shutil.which("clang++")
    if compiler is None:
        return "no C++ compiler (g++/clang++) to run preprocess.cu on the CPU"
    work = Path(tempfile.mkdtemp(prefix="edgekit-host-kernel-"))
    (work / "harness.cpp").write_text(_HOST_HARNESS, encoding="utf-8")
    flags = ["-std=c++17", "-O2", "-ffp-contract=off", "-shared", "-fPIC", "-I", str(build.KERNEL_SOURCE.parent)]
    command = [compiler, *flags, str(work / "harness.cpp"), "-o", str(work / "kernel.so")]
    result = subprocess.run(command, capture_output=True, check=False)
    if result.returncode != 0:
        return f"{compiler} could not build preprocess.cu for the CPU: {result.stderr.decode()[-500:]}"
    library = ctypes.CDLL(str(work / "kernel.so"))
    shutil.rmtree(work)  # the loaded library stays mapped
    return library


def _emulate_kernel(params: launch.LaunchParams, grid: tuple, memory: dict[int, np.ndarray], out: np.ndarray) -> None:
    """preprocess.cu transliterated line by line; `memory` maps base addresses to flat uint8 arrays."""
    half = 1 << (PRECISION_BITS - 1)
    clip8 = lambda acc: min(max(acc >> PRECISION_BITS, 0), 255)  # noqa: E731
    bx, by, _ = launch.BLOCK
    for n, gy, gx, ty, tx in np.ndindex(grid[2], grid[1], grid[0], by, bx):
        ox, oy, crop = gx * bx + tx, gy * by + ty, params.crop
        if ox >= crop or oy >= crop or n >= params.count:
            continue
        im = params.images[n]
        src, tables = memory[im.src], memory[im.tables].view(np.int32)
        x0, xn = int(tables[2 * ox]), int(tables[2 * ox + 1])
        y0, yn = int(tables[2 * crop + 2 * oy]), int(tables[2 * crop + 2 * oy + 1])
        wx, wy = 4 * crop + ox * im.kx, 4 * crop + crop * im.kx + oy * im.ky
        acc = [half, half, half]
        for j in range(yn):
            px = (y0 + j) * im.pitch + x0 * im.stride
            h = [half, half, half]
            for i in range(xn):
                for c in range(3):
                    h[c] += int(src[px + im.offset[c]]) * int(tables[wx + i])
                px += im.stride
            for c in range(3):
                acc[c] += clip8(h[c]) * int(tables[wy + j])
        plane = crop * crop
        index = (params.first + n) * 3 * plane + oy * crop + ox
        for c in range(3):
            value = np.float32(np.float32(clip8(acc[c])) * np.float32(params.scale[c])) + np.float32(params.shift[c])
            out[index + c * plane] = value  # numpy casts to float16 with round-to-nearest-even for fp16 output


class _FakeDriver:
    """The part of cuda.bindings.driver that CudaPreprocessor uses, on host memory ("device pointers" are
    real addresses): a launch runs preprocess.cu compiled for the CPU (or, without a C++ compiler, its
    Python transliteration) on the parameters the launcher's kernelParams pointer points at."""

    CUresult = enum.Enum("CUresult", {"CUDA_SUCCESS": 0, "CUDA_ERROR_NO_BINARY_FOR_GPU": 209})
    CUdevice_attribute = enum.Enum(
        "CUdevice_attribute",
        {f"CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_{part}": value for part, value in (("MAJOR", 75), ("MINOR", 76))},
    )

    def __init__(self) -> None:
        self.memory: dict[int, np.ndarray] = {}
        self.depth, self.launches, self.allocations, self.streams = 0, 0, 0, set()
        for name in ("cuInit", "cuCtxSynchronize", "cuModuleUnload", "cuDevicePrimaryCtxRelease"):
            setattr(self, name, lambda *args: (self.CUresult.CUDA_SUCCESS,))

    def _ok(self, *values: object) -> tuple:
        return (self.CUresult.CUDA_SUCCESS, *values)

    CUstream = int
    cuDeviceGet = lambda self, ordinal: self._ok(ordinal)  # noqa: E731
    cuDeviceGetName = lambda self, size, device: self._ok(b"Fake Orin\0\0")  # noqa: E731
    cuDevicePrimaryCtxRetain = lambda self, device: self._ok("primary")  # noqa: E731
    cuModuleGetFunction = lambda self, module, name: self._ok(name.decode())  # noqa: E731

    def cuDeviceGetAttribute(self, attribute: enum.Enum, device: int) -> tuple:
        return self._ok(8 if attribute.name.endswith("MAJOR") else 7)

    def cuCtxPushCurrent(self, context: str) -> tuple:
        self.depth += 1
        return self._ok()

    def cuCtxPopCurrent(self) -> tuple:
        self.depth -= 1
        return self._ok("primary")

    def cuModuleLoadData(self, image: bytes) -> tuple:
        if image[:4] == b"\x7fELF" or b".target" in image:
            return self._ok("module")
        return (self.CUresult.CUDA_ERROR_NO_BINARY_FOR_GPU, None)

    def cuMemAlloc(self, size: int) -> tuple:
        buffer = np.zeros(size, dtype=np.uint8)
        self.memory[buffer.ctypes.data] = buffer
        return self._ok(buffer.ctypes.data)

    def cuMemFree(self, address: int) -> tuple:
        del self.memory[int(address)]
        return self._ok()

    def cuMemcpyHtoD(self, dst: int, src: int, size: int) -> tuple:
        self.memory[dst][:size] = np.frombuffer(ctypes.string_at(src, size), dtype=np.uint8)
        return self._ok()

    def cuMemcpyDtoH(self, dst: int, src: int, size: int) -> tuple:
        ctypes.memmove(dst, self.memory[src].ctypes.data, size)
        return self._ok()

    def cuMemsetD8(self, dst: int, value: int, size: int) -> tuple:
        self.memory[dst][:size] = value
        return self._ok()

    def cuLaunchKernel(self, function: str, *args: object) -> tuple:
        *dims, shared, stream, argv, extra = args
        grid, block = tuple(dims[:3]), tuple(dims[3:])
        assert block == launch.BLOCK and shared == 0 and extra == 0 and self.depth > 0
        pointer = ctypes.cast(argv, ctypes.POINTER(ctypes.c_void_p))[0]
        params = launch.LaunchParams.from_buffer_copy(ctypes.string_at(pointer, ctypes.sizeof(launch.LaunchParams)))
        assert grid == launch.grid_for(params.crop, params.count)
        half = function.endswith("f16")
        host = _host_kernel()
        if isinstance(host, str):
            _emulate_kernel(params, grid, self.memory, self.memory[params.out].view(np.float16 if half else np.float32))
        else:
            host.edgekit_run(ctypes.c_void_p(pointer), int(half), *grid, *block[:2])
        self.launches += 1
        self.streams.add(stream)
        return self._ok()


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_launcher_drives_the_kernel_arithmetic(dtype: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """CudaPreprocessor end to end on a fake driver: module loading, table upload, parameter packing, grid,
    batch splitting and the output download, with the kernel transliterated into Python."""
    fake = _FakeDriver()
    monkeypatch.setattr(launch.cuda, "driver", lambda: fake)
    spec = PreprocessSpec(resize=10, crop=8, mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3))
    images, layouts, expected = [], [], []
    for k in range(34):  # more than one launch holds: 32 + 2
        name = list(LAYOUTS)[k % len(LAYOUTS)]
        pixels = _textured(9 + 3 * (k % 11), 30 - (k % 20), seed=k)
        if name == "L":
            pixels = pixels[:, :, 0]
        elif name in ("RGBA", "BGRA"):
            pixels = np.concatenate([pixels, np.full((*pixels.shape[:2], 1), 7, np.uint8)], axis=2)
        images.append(np.ascontiguousarray(pixels))
        layouts.append(name)
        expected.append(reference_preprocess(images[-1], spec, pixel_layout=name, transform_input=True, dtype=dtype))
    with launch.CudaPreprocessor(spec, transform_input=True) as pre:
        assert pre.sm == 87 and pre.device_name == "Fake Orin" and pre.kernel_origin.startswith("NVRTC")
        out = pre.preprocess_arrays(images, pixel_layout=layouts, dtype=dtype, pitch_padding=5, first=2, out_images=37)
        assert fake.launches == 2 and fake.depth == 0 and fake.streams == {0}
        assert len(fake.memory) == len({i.shape[:2] for i in images})  # only tables (one per size) stay
    assert not fake.memory
    assert np.isnan(out[:2].astype(np.float32)).all() and np.isnan(out[36:].astype(np.float32)).all()
    np.testing.assert_array_equal(out[2:36], np.stack(expected))


def test_kernel_source_runs_on_the_cpu_and_equals_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    """preprocess.cu as C++ through the real launcher on real photos at 224: bit-identical to the reference
    (which equals PIL), for every layout, pitched rows, fp16, transform_input and a 2-launch batch."""
    if isinstance(_host_kernel(), str):
        pytest.skip(_host_kernel())
    fake = _FakeDriver()
    monkeypatch.setattr(launch.cuda, "driver", lambda: fake)
    photos = [*sample_photos().values(), _textured(1920, 1080, seed=1), _textured(5, 9, seed=2)]
    images, layouts = [], []
    for k in range(35):
        # each photo once at full size, then crops of them of 30 other sizes (the reference is slow on big ones)
        rgb = photos[k] if k < len(photos) else photos[k % 3][: 30 + 11 * k, : 40 + 13 * k]
        name = list(LAYOUTS)[k % len(LAYOUTS)]
        pixels = {"RGB": rgb, "BGR": rgb[:, :, ::-1], "L": rgb[:, :, 0]}.get(name)
        if pixels is None:  # RGBA / BGRA
            pixels = np.dstack([rgb if name == "RGBA" else rgb[:, :, ::-1], np.full(rgb.shape[:2], k, np.uint8)])
        images.append(np.ascontiguousarray(pixels))
        layouts.append(name)
    for dtype, transform_input in (("float32", False), ("float16", True)):
        with launch.CudaPreprocessor(PreprocessSpec(), transform_input=transform_input) as pre:
            out = pre.preprocess_arrays(images, pixel_layout=layouts, dtype=dtype, pitch_padding=7, first=1)
        expected = [
            reference_preprocess(i, pre.spec, pixel_layout=n, transform_input=transform_input, dtype=dtype)
            for i, n in zip(images, layouts, strict=True)
        ]
        np.testing.assert_array_equal(out[1:], np.stack(expected))
        assert np.isnan(out[0].astype(np.float32)).all()


def test_launcher_picks_a_bundled_binary_or_falls_back_to_nvrtc(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _FakeDriver()
    monkeypatch.setattr(launch.cuda, "driver", lambda: fake)
    with launch.CudaPreprocessor(binaries={86: b"\x7fELF-86", 90: b"\x7fELF-90"}) as pre:
        assert pre.kernel_origin == "bundled cubin sm_86"  # runs on 8.7
    with launch.CudaPreprocessor(binaries=b"not for this GPU") as pre:
        assert pre.kernel_origin.startswith("NVRTC") and "CUDA_ERROR_NO_BINARY_FOR_GPU" in pre.kernel_origin
    monkeypatch.setattr(launch, "TABLE_CACHE_SIZE", 2)
    with launch.CudaPreprocessor() as pre:
        for size in ((300, 200), (200, 300), (256, 256), (300, 200)):
            pre.tables(*size)
        assert list(pre._tables) == [(256, 256), (300, 200)]  # least recently used evicted and freed


def test_launch_helpers_validate_and_select() -> None:
    assert launch.grid_for(224, 5) == (7, 28, 5) and launch.grid_for(225, 1) == (8, 29, 1)
    with pytest.raises(EdgekitError, match="pitch"):
        launch.DeviceImage(0x1000, 100, 10, pitch=299).validate()
    with pytest.raises(EdgekitError, match="null"):
        launch.DeviceImage(0, 100, 10).validate()
    assert launch.DeviceImage(0x1000, 100, 10, layout="RGBA").row_pitch == 400
    tables = build_tables(100, 10, PreprocessSpec())
    scale, shift = normalisation(PreprocessSpec())
    with pytest.raises(EdgekitError, match="tables for 100×10"):
        launch.pack_params([launch.DeviceImage(0x1000, 101, 10)], [(0x2000, tables)], 0x3000, scale, shift, 224, 0)
    cubins = {75: b"a", 80: b"b", 86: b"c", 90: b"d"}
    assert launch.select_cubin(cubins, 87) == (86, b"c")  # same major, older minor: binary compatible
    assert launch.select_cubin(cubins, 90) == (90, b"d")
    assert launch.select_cubin(cubins, 72) is None and launch.select_cubin(cubins, 100) is None
    reason = launch.gpu_unavailable_reason()
    assert reason is None or reason.startswith("no CUDA GPU: ")


def test_setup_cfg_ships_the_kernel_package_and_source() -> None:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    assert "edgekit.backends.tensorrt.kernels" in config["options"]["packages"].split()
    assert "*.cu" in config["options.package_data"]["edgekit.backends.tensorrt.kernels"]


# ---- the source compiles -----------------------------------------------------------------------------


def _assert_cubin(image: bytes) -> None:
    assert image[:4] == b"\x7fELF"
    for name in build.KERNEL_NAMES.values():
        assert name.encode() in image


@pytest.mark.parametrize("sm", [87, 90])
def test_nvcc_compiles_the_kernel(sm: int) -> None:
    if build.find_nvcc() is None:
        pytest.skip("nvcc not found (CUDA toolkit not installed); the NVRTC test compiles the kernel instead")
    _assert_cubin(build.nvcc_cubin(sm))


def test_without_nvcc_the_aot_build_says_what_it_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build, "find_nvcc", lambda: None)
    aot = build.build_aot([87])
    assert not aot.cubins and "nvcc not found" in aot.skipped[87]


def test_nvcc_aot_build_reports_what_it_could_not_build() -> None:
    nvcc = build.find_nvcc()
    if nvcc is None:
        pytest.skip("nvcc not found (CUDA toolkit not installed): the build without it is tested above")
    targets = build.nvcc_targets(nvcc)
    aot = build.build_aot([53, 87, 90])
    assert aot.built == [sm for sm in (87, 90) if sm in targets] and aot.compiler.startswith("nvcc ")
    assert "cannot target sm_53" in aot.skipped[53] and "NVRTC" in aot.skipped[53]
    fatbin = build.nvcc_fatbin(aot.built)
    assert len(fatbin) > 1000


@pytest.mark.parametrize("sm", [87, 90])
def test_nvrtc_compiles_the_kernel(sm: int) -> None:
    # Only a missing cuda-bindings skips: the dev extra installs it with NVRTC, so CI always compiles here.
    pytest.importorskip("cuda.bindings", reason="cuda-bindings not installed (pip install -e '.[dev]')")
    assert build.nvrtc_version() is not None, "cuda-bindings is installed but NVRTC does not load"
    _assert_cubin(build.nvrtc_compile(sm))
    ptx = build.nvrtc_compile(sm, ptx=True)
    assert ptx.endswith(b"\0") and f".target sm_{sm}".encode() in ptx
    image, origin = build.compile_for_device(sm)
    assert origin.startswith("NVRTC") and image[:4] == b"\x7fELF"


def test_no_compiler_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build, "nvrtc_version", lambda: None)
    monkeypatch.setattr(build, "find_nvcc", lambda: None)
    with pytest.raises(EdgekitError, match=r"NVRTC is not available.*nvcc not found"):
        build.compile_for_device(87)


@pytest.mark.parametrize("arch", ["inception_v3", "efficientnet_b3", "mobilenet_v3_large"])
def test_reference_with_each_familys_default_transform(arch: str) -> None:
    """Inception v3 resizes to 342 and crops 299, EfficientNet-B3 320/300 bicubic: the kernel's resample and
    crop tables follow the family's spec, not GoogLeNet's 256/224."""
    from edgekit.model.families import default_preprocessing

    spec = default_preprocessing(arch)
    assert (spec.resize, spec.crop, spec.interpolation) == {
        "inception_v3": (342, 299, "bilinear"), "efficientnet_b3": (320, 300, "bicubic"),
        "mobilenet_v3_large": (256, 224, "bilinear"),
    }[arch]  # fmt: skip
    _assert_matches(sample_photos()["china"], spec)
