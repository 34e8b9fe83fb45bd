"""Loading and launching preprocess.cu with cuda-python's driver API (`cuda.bindings.driver`).

`CudaPreprocessor` holds the loaded module and, per source image size, the coefficient tables on the
device; calling it enqueues the kernel on the caller's stream to write NCHW float32/float16 straight into
a device buffer (a TensorRT engine's input binding). It works in the device's primary context, the one
the CUDA runtime (TensorRT, PyTorch, CuPy) uses, so their device pointers and streams are valid here.

Batches: one launch handles up to MAX_IMAGES_PER_LAUNCH images of any sizes (grid z = image), with the
per-image descriptors passed by value in the kernel parameters: nothing is copied to the device per call,
so there is no host buffer whose lifetime must outlive an asynchronous copy and nothing that serialises
the stream. Larger batches are split into several launches that write at their batch offset.

Everything that needs no GPU (parameter packing, grid, binary selection) is a plain function, tested on
the CPU; cuda-python is imported only when a GPU is used.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from edgekit.backends.tensorrt import cuda
from edgekit.backends.tensorrt.kernels.cpu_reference import (
    CropTables,
    build_tables,
    image_layout_check,
    layout,
    normalisation,
    output_dtype,
    pad_rows,
)
from edgekit.backends.tensorrt.kernels.toolchain import KERNEL_NAMES, compile_for_device
from edgekit.core.errors import EdgekitError
from edgekit.data.preprocess import PreprocessSpec

MAX_IMAGES_PER_LAUNCH = 32  # EDGEKIT_MAX_IMAGES in preprocess.cu
BLOCK = (32, 8, 1)  # one thread per output pixel; x along rows so the stores coalesce
TABLE_CACHE_SIZE = 64  # source sizes whose tables stay on the device (~10-20 KB each)


class ImageDesc(ctypes.Structure):
    """Mirror of EdgekitImage in preprocess.cu (48 bytes; the .cu's static_asserts pin the layout)."""

    _fields_ = (
        ("src", ctypes.c_uint64),
        ("pitch", ctypes.c_int64),
        ("tables", ctypes.c_uint64),
        ("stride", ctypes.c_int32),
        ("offset", ctypes.c_int32 * 3),
        ("kx", ctypes.c_int32),
        ("ky", ctypes.c_int32),
    )


class LaunchParams(ctypes.Structure):
    """Mirror of EdgekitParams in preprocess.cu: the kernel's single by-value argument (1584 bytes)."""

    _fields_ = (
        ("images", ImageDesc * MAX_IMAGES_PER_LAUNCH),
        ("out", ctypes.c_uint64),
        ("scale", ctypes.c_float * 3),
        ("shift", ctypes.c_float * 3),
        ("crop", ctypes.c_int32),
        ("count", ctypes.c_int32),
        ("first", ctypes.c_int32),
        ("reserved", ctypes.c_int32),
    )


@dataclasses.dataclass(frozen=True)
class DeviceImage:
    """One uint8 source image in device memory: `ptr` is the address of pixel (0, 0); rows start every
    `pitch` bytes (0 = tightly packed); `layout` is RGB, BGR, RGBA, BGRA or L."""

    ptr: int
    width: int
    height: int
    pitch: int = 0
    layout: str = "RGB"

    @property
    def row_pitch(self) -> int:
        return self.pitch or self.width * layout(self.layout).stride

    def validate(self) -> None:
        if not self.ptr:
            raise EdgekitError("DeviceImage.ptr is a null device pointer")
        if self.width < 1 or self.height < 1:
            raise EdgekitError(f"image size must be positive (got {self.width}×{self.height})")
        if self.row_pitch < self.width * layout(self.layout).stride:
            raise EdgekitError(f"pitch {self.pitch} is smaller than a {self.width}-pixel {self.layout} row")


def grid_for(crop: int, count: int) -> tuple[int, int, int]:
    return (-(-crop // BLOCK[0]), -(-crop // BLOCK[1]), count)


def launch_chunks(count: int) -> list[tuple[int, int]]:
    """[start, stop) image ranges, one launch each."""
    return [(s, min(s + MAX_IMAGES_PER_LAUNCH, count)) for s in range(0, count, MAX_IMAGES_PER_LAUNCH)]


def pack_params(
    images: Sequence[DeviceImage],
    tables: Sequence[tuple[int, CropTables]],
    out_ptr: int,
    scale: np.ndarray,
    shift: np.ndarray,
    crop: int,
    first: int,
) -> LaunchParams:
    """The kernel argument for one launch: `tables[i]` = (device address, tables) for `images[i]`, and
    `first` the batch index in `out_ptr` where images[0] goes."""
    if not 1 <= len(images) <= MAX_IMAGES_PER_LAUNCH or len(tables) != len(images):
        raise EdgekitError(f"one launch takes 1..{MAX_IMAGES_PER_LAUNCH} images with one table each")
    params = LaunchParams()
    for index, (image, (table_ptr, table)) in enumerate(zip(images, tables)):
        desc, fmt = params.images[index], layout(image.layout)
        if (table.width, table.height, table.crop) != (image.width, image.height, crop):
            raise EdgekitError(f"tables for {table.width}×{table.height} used for {image.width}×{image.height}")
        desc.src, desc.pitch, desc.tables = image.ptr, image.row_pitch, table_ptr
        desc.stride, desc.kx, desc.ky = fmt.stride, table.kx, table.ky
        desc.offset[:] = fmt.offsets
    params.out = out_ptr
    params.scale[:] = [float(v) for v in np.asarray(scale, dtype=np.float32)]
    params.shift[:] = [float(v) for v in np.asarray(shift, dtype=np.float32)]
    params.crop, params.count, params.first = crop, len(images), first
    return params


def select_cubin(binaries: Mapping[int, bytes], sm: int) -> tuple[int, bytes] | None:
    """The cubin for compute capability `sm` (87 = 8.7): an exact match, else the newest of the same major
    version and a lower minor (cubins run on later minors of their major), else None."""
    if sm in binaries:
        return sm, binaries[sm]
    usable = [s for s in binaries if s // 10 == sm // 10 and s <= sm]
    return (max(usable), binaries[max(usable)]) if usable else None


# ---- the driver ----------------------------------------------------------------------------------


def gpu_unavailable_reason(device: int = 0) -> str | None:
    """None when cuda-python can use GPU `device`, else why not ("no CUDA GPU: ...")."""
    try:
        drv = cuda.driver()
        cuda.check(drv.cuInit(0), "cuInit")
        (count,) = cuda.check(drv.cuDeviceGetCount(), "cuDeviceGetCount")
    except (cuda.CudaError, EdgekitError) as exc:  # a failing call; no cuda-python
        return f"no CUDA GPU: {exc}"
    except (RuntimeError, OSError) as exc:  # cuda.pathfinder's DynamicLibNotFoundError (a RuntimeError): no libcuda
        return f"no CUDA GPU: the NVIDIA driver library could not be loaded ({type(exc).__name__}: {exc})"
    if count <= device:
        return f"no CUDA GPU: the driver sees {count} device(s), device {device} requested"
    return None


class CudaPreprocessor:
    """The fused kernel on one GPU for one PreprocessSpec.

    `binaries`: a fatbin/cubin (bytes) or cubins by SM ({87: b"..."}) from the bundle; when none fits this
    GPU (or none is given) the source is compiled with NVRTC for it, once, at construction.
    `transform_input=True` folds GoogLeNet's or Inception v3's transform_input into the normalisation: the
    engine must then have been built from a model exported with transform_input off.
    """

    def __init__(
        self,
        spec: PreprocessSpec | None = None,
        *,
        transform_input: bool = False,
        binaries: bytes | Mapping[int, bytes] | None = None,
        device: int = 0,
    ) -> None:
        self.spec = spec or PreprocessSpec()
        self.scale, self.shift = normalisation(self.spec, transform_input)
        drv = cuda.driver()
        cuda.check(drv.cuInit(0), "cuInit")
        (self._device,) = cuda.check(drv.cuDeviceGet(device), "cuDeviceGet")
        attribute = drv.CUdevice_attribute
        (major,) = cuda.check(
            drv.cuDeviceGetAttribute(attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, self._device), "major"
        )
        (minor,) = cuda.check(
            drv.cuDeviceGetAttribute(attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, self._device), "minor"
        )
        self.sm = major * 10 + minor
        (name,) = cuda.check(drv.cuDeviceGetName(256, self._device), "cuDeviceGetName")
        self.device_name = name.split(b"\0", 1)[0].decode()
        (self._context,) = cuda.check(drv.cuDevicePrimaryCtxRetain(self._device), "cuDevicePrimaryCtxRetain")
        self._tables: collections.OrderedDict[tuple[int, int], tuple[Any, CropTables]] = collections.OrderedDict()
        with self.current():
            self._module, self.kernel_origin = self._load(binaries)
            self._functions = {
                dtype: cuda.check(drv.cuModuleGetFunction(self._module, name.encode()), f"cuModuleGetFunction {name}")
                for dtype, name in KERNEL_NAMES.items()
            }

    def _load(self, binaries: bytes | Mapping[int, bytes] | None) -> tuple[Any, str]:
        drv = cuda.driver()
        tried: list[str] = []
        candidates: list[tuple[str, bytes]] = []
        if isinstance(binaries, (bytes, bytearray, memoryview)):  # not `bytes | …`: Python 3.8 on the device
            candidates.append(("bundled binary", bytes(binaries)))
        elif binaries:
            chosen = select_cubin(binaries, self.sm)
            if chosen is None:
                tried.append(f"no bundled cubin runs on sm_{self.sm} (have {sorted(binaries)})")
            else:
                candidates.append((f"bundled cubin sm_{chosen[0]}", chosen[1]))
        for origin, image in candidates:
            result = drv.cuModuleLoadData(image)
            if result[0] == drv.CUresult.CUDA_SUCCESS:
                return result[1], origin
            tried.append(f"{origin}: {result[0].name}")
        image, origin = compile_for_device(self.sm)
        (module,) = cuda.check(drv.cuModuleLoadData(image), f"cuModuleLoadData ({origin})")
        return module, origin + (f", after {'; '.join(tried)}" if tried else "")

    @contextlib.contextmanager
    def current(self) -> Iterator[None]:
        """Make this GPU's primary context current for the block (restoring the caller's afterwards)."""
        drv = cuda.driver()
        cuda.check(drv.cuCtxPushCurrent(self._context), "cuCtxPushCurrent")
        try:
            yield
        finally:
            cuda.check(drv.cuCtxPopCurrent(), "cuCtxPopCurrent")

    def tables(self, width: int, height: int) -> tuple[int, CropTables]:
        """(device address, tables) for a source size, uploaded on first use: a copy followed by a context
        synchronisation, so that a launch on any stream (blocking or not) finds them complete. That costs
        once per new source size; a camera or video stream has one."""
        key = (width, height)
        if key in self._tables:
            self._tables.move_to_end(key)
        else:
            self._upload_tables(key)
        ptr, table = self._tables[key]
        return int(ptr), table

    def _upload_tables(self, key: tuple[int, int]) -> None:
        drv = cuda.driver()
        with self.current():
            if len(self._tables) >= TABLE_CACHE_SIZE:
                cuda.check(drv.cuCtxSynchronize(), "cuCtxSynchronize")  # launches in flight may still read it
                old, _ = self._tables.popitem(last=False)[1]
                cuda.check(drv.cuMemFree(old), "cuMemFree")
            table = build_tables(*key, self.spec)
            packed = table.packed()
            (ptr,) = cuda.check(drv.cuMemAlloc(packed.nbytes), "cuMemAlloc (tables)")
            cuda.check(drv.cuMemcpyHtoD(ptr, packed.ctypes.data, packed.nbytes), "cuMemcpyHtoD (tables)")
            # A pageable cuMemcpyHtoD may return before its DMA lands; a non-blocking stream would not wait.
            cuda.check(drv.cuCtxSynchronize(), "cuCtxSynchronize (tables)")
            self._tables[key] = (ptr, table)

    def __call__(
        self, images: Sequence[DeviceImage], out_ptr: int, stream: Any = 0, dtype: str = "float32", first: int = 0
    ) -> None:
        """Enqueue preprocessing of `images` on `stream`, writing [len(images), 3, crop, crop] of `dtype`
        (float32 or float16) at batch index `first` of the NCHW tensor at `out_ptr` (a device address).
        Asynchronous: the source and output buffers must stay valid until the stream reaches this work. A
        source size seen for the first time uploads its tables first (see `tables`)."""
        drv = cuda.driver()
        (function,) = self._functions["float16" if output_dtype(dtype) is np.float16 else "float32"]
        if not int(out_ptr):
            raise EdgekitError("out_ptr is a null device pointer")
        for image in images:
            image.validate()
        handle = drv.CUstream(int(stream or 0))  # an int handle, cudaStream_t or CUstream; 0 = legacy default
        crop = self.spec.crop
        with self.current():
            for start, stop in launch_chunks(len(images)):
                chunk = images[start:stop]
                tables = [self.tables(image.width, image.height) for image in chunk]
                params = pack_params(chunk, tables, int(out_ptr), self.scale, self.shift, crop, first + start)
                argv = (ctypes.c_void_p * 1)(ctypes.addressof(params))
                # The driver copies the parameter values during the call: `params` may go away after it.
                grid = grid_for(crop, len(chunk))
                result = drv.cuLaunchKernel(function, *grid, *BLOCK, 0, handle, ctypes.addressof(argv), 0)
                cuda.check(result, "cuLaunchKernel")

    def preprocess_arrays(
        self,
        images: Sequence[np.ndarray],
        *,
        pixel_layout: str | Sequence[str] = "RGB",
        dtype: str = "float32",
        pitch_padding: int = 0,
        first: int = 0,
        out_images: int | None = None,
    ) -> np.ndarray:
        """Host convenience (tests, benchmarks): upload HWC uint8 arrays (rows padded by `pitch_padding`
        bytes of junk; one layout for all or one per image), run, and return the whole
        [out_images, 3, crop, crop] output; slots not written (outside first..first+len) hold NaN."""
        drv = cuda.driver()
        layouts = [pixel_layout] * len(images) if isinstance(pixel_layout, str) else list(pixel_layout)
        out_images = first + len(images) if out_images is None else out_images
        np_dtype = output_dtype(dtype)
        crop = self.spec.crop
        result = np.empty((out_images, 3, crop, crop), dtype=np_dtype)
        allocations: list[Any] = []
        with self.current():
            try:
                descriptors = []
                for image, name in zip(images, layouts):
                    width, height = image_layout_check(image, name)
                    host = pad_rows(image, width * layout(name).stride + pitch_padding)
                    (ptr,) = cuda.check(drv.cuMemAlloc(host.nbytes), "cuMemAlloc (image)")
                    allocations.append(ptr)
                    cuda.check(drv.cuMemcpyHtoD(ptr, host.ctypes.data, host.nbytes), "cuMemcpyHtoD (image)")
                    descriptors.append(DeviceImage(int(ptr), width, height, host.shape[1], name))
                (out,) = cuda.check(drv.cuMemAlloc(result.nbytes), "cuMemAlloc (output)")
                allocations.append(out)
                cuda.check(drv.cuMemsetD8(out, 0xFF, result.nbytes), "cuMemsetD8")  # all-ones bits = NaN
                self(descriptors, int(out), 0, dtype, first)
                cuda.check(drv.cuCtxSynchronize(), "cuCtxSynchronize (kernel)")
                cuda.check(drv.cuMemcpyDtoH(result.ctypes.data, out, result.nbytes), "cuMemcpyDtoH")
            finally:
                for ptr in allocations:
                    drv.cuMemFree(ptr)
        return result

    def close(self) -> None:
        """Free the tables and the module and release the primary context (after the GPU is done with them)."""
        if getattr(self, "_context", None) is None:
            return
        drv = cuda.driver()
        with self.current():
            cuda.check(drv.cuCtxSynchronize(), "cuCtxSynchronize")
            for ptr, _ in self._tables.values():
                drv.cuMemFree(ptr)
            self._tables.clear()
            drv.cuModuleUnload(self._module)
        drv.cuDevicePrimaryCtxRelease(self._device)
        self._context = None

    def __enter__(self) -> CudaPreprocessor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def preprocess_arrays(
    images: Sequence[np.ndarray],
    spec: PreprocessSpec | None = None,
    *,
    pixel_layout: str = "RGB",
    transform_input: bool = False,
    dtype: str = "float32",
) -> np.ndarray:
    """One-shot convenience: [N, 3, crop, crop] on the GPU from HWC uint8 arrays (compiles the kernel)."""
    with CudaPreprocessor(spec, transform_input=transform_input) as pre:
        return pre.preprocess_arrays(images, pixel_layout=pixel_layout, dtype=dtype)
