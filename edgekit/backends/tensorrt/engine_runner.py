"""Running a TensorRT engine with cuda-python: device buffers, one stream, CUDA events, CUDA graphs.

pycuda does not build or import without a driver, and TensorRT's own samples moved to cuda-python,
so this is what edgekit uses. Naming follows `trt_builder.py`'s convention (`runtime`, `engine`,
`context`) so `api_check.py` can check every TensorRT call against the published API.
TensorRT 8.5+ run through the name-based tensor API; 8.2–8.4 (Jetson Nano) through bindings.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from edgekit.backends.tensorrt import cuda
from edgekit.backends.tensorrt.compat import supports
from edgekit.core.errors import EdgekitError


@dataclasses.dataclass
class DeviceBuffer:
    pointer: int = 0
    nbytes: int = 0

    def ensure(self, nbytes: int) -> int:
        cudart = cuda.runtime()

        if nbytes > self.nbytes:
            if self.pointer:
                cuda.value(cudart.cudaFree(self.pointer))
            self.pointer, self.nbytes = int(cuda.value(cudart.cudaMalloc(nbytes))), nbytes
        return self.pointer


@dataclasses.dataclass
class StageTimes:
    """Milliseconds of the last run, measured with CUDA events on the stream."""

    upload_ms: float = 0.0
    preprocess_ms: float = 0.0
    network_ms: float = 0.0
    download_ms: float = 0.0


class EngineRunner:
    """One deserialized engine with its execution context, buffers and stream."""

    def __init__(self, plan: bytes, plan_name: str, trust_host_code: bool = False, cuda_graph: bool = False) -> None:
        import tensorrt as trt

        cudart = cuda.runtime()

        self._version = str(trt.__version__)
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = runtime = trt.Runtime(self._logger)
        if trust_host_code and supports(self._version, "host_code_flag"):
            runtime.engine_host_code_allowed = True
        engine = runtime.deserialize_cuda_engine(plan)
        if engine is None:
            hint = "" if trust_host_code else " (a version-compatible plan needs --trust-engine-host-code)"
            raise EdgekitError(
                f"TensorRT {self._version} could not load {plan_name}{hint}; rebuild it with `edgekit build`"
            )
        self._engine = engine
        self._context = engine.create_execution_context()
        self._stream = cuda.value(cudart.cudaStreamCreate())
        self._events = [cuda.value(cudart.cudaEventCreate()) for _ in range(5)]
        self._tensor_api = supports(self._version, "tensor_address_api")
        self.input_name, self.output_name = self._io_names(trt)
        self.input_buffer, self._output, self._frames = DeviceBuffer(), DeviceBuffer(), DeviceBuffer()
        self.cuda_graph = cuda_graph
        self._graphs: dict[tuple[int, ...], Any] = {}
        self.times = StageTimes()

    def _io_names(self, trt: Any) -> tuple[str, str]:
        engine = self._engine
        if self._tensor_api:
            names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
            inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        else:
            names = [engine.get_binding_name(i) for i in range(engine.num_bindings)]  # trt-api: legacy
            inputs = [n for i, n in enumerate(names) if engine.binding_is_input(i)]  # trt-api: legacy
        outputs = [n for n in names if n not in inputs]
        if len(inputs) != 1 or not outputs:
            raise EdgekitError(f"the engine has inputs {inputs} and outputs {outputs}; edgekit expects one image input")
        return inputs[0], outputs[0]

    def _output_shape(self, batch: int) -> tuple[int, ...]:
        if self._tensor_api:
            shape = tuple(self._context.get_tensor_shape(self.output_name))
        else:
            index = self._engine.get_binding_index(self.output_name)  # trt-api: legacy
            shape = tuple(self._context.get_binding_shape(index))  # trt-api: legacy
        return (batch, *shape[1:])

    def _enqueue(self, shape: tuple[int, ...]) -> None:
        """The network on the stream, as a captured CUDA graph when asked (one per input shape)."""
        cudart = cuda.runtime()

        context, stream = self._context, self._stream
        if not self._tensor_api:
            pointers = {self.input_name: self.input_buffer.pointer, self.output_name: self._output.pointer}
            order = [self._engine.get_binding_name(i) for i in range(self._engine.num_bindings)]  # trt-api: legacy
            if not context.execute_async_v2([pointers[n] for n in order], int(stream)):  # trt-api: legacy
                raise cuda.CudaError("TensorRT execute_async_v2 failed")
            return
        if not self.cuda_graph:
            if not context.execute_async_v3(int(stream)):
                raise cuda.CudaError("TensorRT execute_async_v3 failed")
            return
        if shape not in self._graphs:
            context.execute_async_v3(int(stream))  # TensorRT finishes lazy set-up outside the capture
            cuda.value(cudart.cudaStreamBeginCapture(stream, cudart.cudaStreamCaptureMode.cudaStreamCaptureModeGlobal))
            context.execute_async_v3(int(stream))
            graph = cuda.value(cudart.cudaStreamEndCapture(stream))
            self._graphs[shape] = cuda.value(cudart.cudaGraphInstantiate(graph, 0))
        cuda.value(cudart.cudaGraphLaunch(self._graphs[shape], stream))

    def prepare(self, shape: tuple[int, ...]) -> int:
        """Size the buffers for an input `shape`; returns the input's device pointer (for the kernel)."""
        context = self._context
        batch = shape[0]
        if self._tensor_api:
            context.set_input_shape(self.input_name, shape)
        else:
            context.set_binding_shape(self._engine.get_binding_index(self.input_name), shape)  # trt-api: legacy
        before = (self.input_buffer.pointer, self._output.pointer)
        self.input_buffer.ensure(int(np.prod(shape)) * 4)  # float32: the engines keep FP32 inputs
        self._output.ensure(int(np.prod(self._output_shape(batch))) * 4)
        if (self.input_buffer.pointer, self._output.pointer) != before:
            self._graphs.clear()  # captured graphs hold the old addresses
        if self._tensor_api:
            context.set_tensor_address(self.input_name, self.input_buffer.pointer)
            context.set_tensor_address(self.output_name, self._output.pointer)
        return self.input_buffer.pointer

    def _record(self, index: int) -> None:
        cudart = cuda.runtime()

        cuda.value(cudart.cudaEventRecord(self._events[index], self._stream))

    def _elapsed(self, first: int, last: int) -> float:
        cudart = cuda.runtime()

        return float(cuda.value(cudart.cudaEventElapsedTime(self._events[first], self._events[last])))

    def _upload(self, destination: int, array: np.ndarray) -> None:
        cudart = cuda.runtime()

        kind = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        cuda.value(cudart.cudaMemcpyAsync(destination, array.ctypes.data, array.nbytes, kind, self._stream))

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Upload a float32 NCHW batch, run the network, download the first output."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        pointer = self.prepare(batch.shape)
        self._record(0)
        self._upload(pointer, batch)
        self._record(1)
        output = self._network_and_download(batch.shape, input_ready=1)
        self.times = dataclasses.replace(self.times, upload_ms=self._elapsed(0, 1), preprocess_ms=0.0)
        return output

    def run_frames(self, frames: list[np.ndarray], preprocessor: Any) -> np.ndarray:
        """Decoded uint8 HWC RGB frames → the fused CUDA preprocessing kernel → network → output.

        The frames are uploaded as they are (any sizes); the kernel writes the engine's input directly.
        """
        from edgekit.backends.tensorrt.kernels.launch import DeviceImage

        frames = [np.ascontiguousarray(frame, dtype=np.uint8) for frame in frames]
        crop = preprocessor.spec.crop
        shape = (len(frames), 3, crop, crop)
        pointer = self.prepare(shape)
        base = self._frames.ensure(sum(frame.nbytes for frame in frames))
        images, offset = [], 0
        self._record(0)
        for frame in frames:
            self._upload(base + offset, frame)
            images.append(DeviceImage(base + offset, frame.shape[1], frame.shape[0], layout="RGB"))
            offset += frame.nbytes
        self._record(1)
        preprocessor(images, pointer, self._stream, "float32")
        self._record(2)
        output = self._network_and_download(shape, input_ready=2)
        self.times = dataclasses.replace(self.times, upload_ms=self._elapsed(0, 1), preprocess_ms=self._elapsed(1, 2))
        return output

    def _network_and_download(self, shape: tuple[int, ...], input_ready: int) -> np.ndarray:
        cudart = cuda.runtime()

        self._enqueue(tuple(shape))
        self._record(3)
        output = np.empty(self._output_shape(shape[0]), np.float32)
        kind = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        cuda.value(cudart.cudaMemcpyAsync(output.ctypes.data, self._output.pointer, output.nbytes, kind, self._stream))
        self._record(4)
        cuda.value(cudart.cudaStreamSynchronize(self._stream))
        self.times = dataclasses.replace(
            self.times, network_ms=self._elapsed(input_ready, 3), download_ms=self._elapsed(3, 4)
        )
        return output
