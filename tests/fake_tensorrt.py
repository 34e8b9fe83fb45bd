"""A stand-in `tensorrt` module made from TensorRT's published Python API (trt_api.json), for CPU tests.

TensorRT cannot be installed here. This fake has exactly the classes, methods, properties and enum
members of one real release: touching anything else raises AttributeError, as the real module
would, so the build code cannot drift from the API. Behaviour is only what the build needs (objects
to return, a plan's bytes), and every call is recorded for the tests to check.
"""

from __future__ import annotations

import json
import types
from typing import Any

from edgekit.backends.tensorrt.api_check import published_api

# What a method returns, by (class, method): another fake object's class name, or a value.
RETURNS: dict[tuple[str, str], Any] = {
    ("Builder", "create_network"): "INetworkDefinition",
    ("Builder", "create_builder_config"): "IBuilderConfig",
    ("Builder", "create_optimization_profile"): "IOptimizationProfile",
    ("IBuilderConfig", "create_timing_cache"): "ITimingCache",
    ("Runtime", "deserialize_cuda_engine"): "ICudaEngine",
    ("ICudaEngine", "create_engine_inspector"): "EngineInspector",
    ("ICudaEngine", "create_execution_context"): "IExecutionContext",
    ("INetworkDefinition", "get_layer"): "ILayer",
    ("OnnxParser", "parse_from_file"): True,
    ("ITimingCache", "serialize"): b"timing-cache",
    ("IBuilderConfig", "can_run_on_DLA"): True,
    ("IBuilderConfig", "add_optimization_profile"): 0,
}


class FakeObject:
    def __init__(self, module: FakeTensorRT, cls: str, *args: Any) -> None:
        object.__setattr__(self, "_module", module)
        object.__setattr__(self, "_cls", cls)
        module.calls.append((cls, "__init__", args))

    def _check(self, name: str) -> None:
        if not self._module.has(self._cls, name):
            version = self._module.__version__
            raise AttributeError(f"'tensorrt.{self._cls}' object has no attribute '{name}' in TensorRT {version}")

    def __getattr__(self, name: str) -> Any:
        self._check(name)
        module, cls = self._module, self._cls
        if (cls, name) in module.values:
            return module.values[(cls, name)]

        def method(*args: Any) -> Any:
            module.calls.append((cls, name, args))
            result = module.behaviour.get((cls, name), RETURNS.get((cls, name)))
            if callable(result):
                return result(*args)
            if isinstance(result, str) and module.has(None, result):
                return FakeObject(module, result)
            return result

        return method

    def __setattr__(self, name: str, value: Any) -> None:
        self._check(name)
        self._module.calls.append((self._cls, f"{name}=", (value,)))


class FakeEnumMember(int):
    def __new__(cls, enum: str, name: str, value: int) -> FakeEnumMember:
        member = super().__new__(cls, value)
        member.label = f"{enum}.{name}"
        return member

    def __repr__(self) -> str:
        return self.label


class FakeTensorRT(types.ModuleType):
    def __init__(self, version: str) -> None:
        super().__init__("tensorrt")
        self.api = published_api()[version]
        self.__version__ = version
        self.calls: list[tuple[str, str, tuple[Any, ...]]] = []
        self.values: dict[tuple[str, str], Any] = {
            ("INetworkDefinition", "num_layers"): 2,
            ("ILayer", "name"): "conv1",
        }
        self.behaviour: dict[tuple[str, str], Any] = {
            ("Builder", "build_serialized_network"): lambda *_: b"fake-plan-" + version.encode(),
            ("EngineInspector", "get_engine_information"): lambda *_: json.dumps(
                {"Layers": [{"Name": "conv1 + relu"}, {"Name": "{ForeignNode[inception3a...fc]}"}]}
            ),
        }

    def has(self, owner: str | None, name: str) -> bool:
        if owner is None:
            return name in self.api["module"]
        owner = self.api.get("aliases", {}).get(owner, owner)
        return name in self.api["members"].get(owner, ())

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or not self.has(None, name):
            raise AttributeError(f"module 'tensorrt' {self.__version__} has no attribute '{name}'")
        if name in self.api["enums"]:
            return _enum(self, name)
        if name == "Logger":
            return _logger_class(self)
        return lambda *args: FakeObject(self, name, *args)


def _enum(module: FakeTensorRT, name: str) -> Any:
    members = [m for m in module.api["members"][name] if not m.startswith("_") and m not in ("name", "value")]
    namespace = {m: FakeEnumMember(name, m, i) for i, m in enumerate(sorted(members))}
    return types.SimpleNamespace(**namespace)


def _logger_class(module: FakeTensorRT) -> Any:
    severities = _enum(module, "ILogger.Severity")

    def make(*args: Any) -> FakeObject:
        return FakeObject(module, "Logger", *args)

    make.WARNING = severities.WARNING  # type: ignore[attr-defined]
    make.INFO = severities.INFO  # type: ignore[attr-defined]
    return make
