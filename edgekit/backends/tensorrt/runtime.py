"""Running a TensorRT engine with cuda-python: device buffers, one stream, CUDA events, CUDA graphs.

pycuda does not build or import without a driver, and TensorRT's own samples moved to cuda-python,
so this is what edgekit uses. Naming follows `builder.py`'s convention (`runtime`, `engine`,
`context`) so `api_check.py` can check every TensorRT call against the published API.
TensorRT 8.5+ run through the name-based tensor API; 8.2–8.4 (Jetson Nano) through bindings.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.backends.tensorrt.compat import supports
from edgekit.errors import EdgekitError


def cuda_check(result: Any) -> Any:
    """Unwrap a cuda-python call's (error, value...) tuple; a CUDA failure here is a bug or a dead GPU."""
    from cuda.bindings import runtime as cudart

    error, *values = result if isinstance(result, tuple) else (result,)
    if error != cudart.cudaError_t.cudaSuccess:
        raise RuntimeError(f"CUDA call failed: {cudart.cudaGetErrorString(error)[1].decode()}")
    return values[0] if len(values) == 1 else tuple(values) if values else None


@dataclasses.dataclass
class DeviceBuffer:
    pointer: int = 0
    nbytes: int = 0

    def ensure(self, nbytes: int) -> int:
        from cuda.bindings import runtime as cudart

        if nbytes > self.nbytes:
            if self.pointer:
                cuda_check(cudart.cudaFree(self.pointer))
            self.pointer, self.nbytes = int(cuda_check(cudart.cudaMalloc(nbytes))), nbytes
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

    def __init__(self, plan_path: Path, trust_host_code: bool = False, cuda_graph: bool = False) -> None:
        import tensorrt as trt
        from cuda.bindings import runtime as cudart

        self._version = str(trt.__version__)
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = runtime = trt.Runtime(self._logger)
        if trust_host_code and supports(self._version, "host_code_flag"):
            runtime.engine_host_code_allowed = True
        engine = runtime.deserialize_cuda_engine(plan_path.read_bytes())
        if engine is None:
            hint = "" if trust_host_code else " (a version-compatible plan needs --trust-engine-host-code)"
            raise EdgekitError(
                f"TensorRT {self._version} could not load {plan_path.name}{hint}; rebuild it with `edgekit build`"
            )
        self._engine = engine
        self._context = engine.create_execution_context()
        self._stream = cuda_check(cudart.cudaStreamCreate())
        self._events = [cuda_check(cudart.cudaEventCreate()) for _ in range(5)]
        self._tensor_api = supports(self._version, "tensor_address_api")
        self.input_name, self.output_name = self._io_names(trt)
        self.input_buffer, self._output = DeviceBuffer(), DeviceBuffer()
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
        from cuda.bindings import runtime as cudart

        context, stream = self._context, self._stream
        if not self._tensor_api:
            pointers = {self.input_name: self.input_buffer.pointer, self.output_name: self._output.pointer}
            order = [self._engine.get_binding_name(i) for i in range(self._engine.num_bindings)]  # trt-api: legacy
            if not context.execute_async_v2([pointers[n] for n in order], int(stream)):  # trt-api: legacy
                raise RuntimeError("TensorRT execute_async_v2 failed")
            return
        if not self.cuda_graph:
            if not context.execute_async_v3(int(stream)):
                raise RuntimeError("TensorRT execute_async_v3 failed")
            return
        if shape not in self._graphs:
            context.execute_async_v3(int(stream))  # TensorRT finishes lazy set-up outside the capture
            cuda_check(cudart.cudaStreamBeginCapture(stream, cudart.cudaStreamCaptureMode.cudaStreamCaptureModeGlobal))
            context.execute_async_v3(int(stream))
            graph = cuda_check(cudart.cudaStreamEndCapture(stream))
            self._graphs[shape] = cuda_check(cudart.cudaGraphInstantiate(graph, 0))
        cuda_check(cudart.cudaGraphLaunch(self._graphs[shape], stream))

    def prepare(self, shape: tuple[int, ...], input_itemsize: int = 4) -> int:
        """Size the buffers for an input `shape`; returns the input's device pointer (for the kernel)."""
        context = self._context
        batch = shape[0]
        if self._tensor_api:
            context.set_input_shape(self.input_name, shape)
        else:
            context.set_binding_shape(self._engine.get_binding_index(self.input_name), shape)  # trt-api: legacy
        self.input_buffer.ensure(int(np.prod(shape)) * input_itemsize)
        self._output.ensure(int(np.prod(self._output_shape(batch))) * 4)
        if self._tensor_api:
            context.set_tensor_address(self.input_name, self.input_buffer.pointer)
            context.set_tensor_address(self.output_name, self._output.pointer)
        return self.input_buffer.pointer

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Upload a float32 NCHW batch, run the network, download the first output."""
        from cuda.bindings import runtime as cudart

        batch = np.ascontiguousarray(batch, dtype=np.float32)
        pointer = self.prepare(batch.shape)
        start, uploaded = self._events[0], self._events[1]
        cudart.cudaEventRecord(start, self._stream)
        cuda_check(
            cudart.cudaMemcpyAsync(
                pointer, batch.ctypes.data, batch.nbytes, cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, self._stream
            )
        )
        cudart.cudaEventRecord(uploaded, self._stream)
        output = self.run_on_device(batch.shape)
        self.times.upload_ms = float(cuda_check(cudart.cudaEventElapsedTime(start, uploaded)))
        return output

    def run_on_device(self, shape: tuple[int, ...], preprocessed: Any = None) -> np.ndarray:
        """Run on what is already in the input buffer (uploaded, or written there by the preprocessing kernel)."""
        from cuda.bindings import runtime as cudart

        _, before, after, downloaded = self._events[0], self._events[1], self._events[2], self._events[3]
        if preprocessed is None:
            cudart.cudaEventRecord(before, self._stream)
        self._enqueue(tuple(shape))
        cudart.cudaEventRecord(after, self._stream)
        output = np.empty(self._output_shape(shape[0]), np.float32)
        cuda_check(
            cudart.cudaMemcpyAsync(
                output.ctypes.data,
                self._output.pointer,
                output.nbytes,
                cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost,
                self._stream,
            )
        )
        cudart.cudaEventRecord(downloaded, self._stream)
        cuda_check(cudart.cudaStreamSynchronize(self._stream))
        self.times.network_ms = float(cuda_check(cudart.cudaEventElapsedTime(preprocessed or before, after)))
        self.times.download_ms = float(cuda_check(cudart.cudaEventElapsedTime(after, downloaded)))
        return output

    @property
    def stream(self) -> Any:
        return self._stream
