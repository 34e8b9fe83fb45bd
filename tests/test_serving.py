"""Triton and DeepStream (issue 32): a real tritonserver on 127.0.0.1 (`edgekit serve`, and the binary on an
exported repository) queried with tritonclient over HTTP and gRPC; config.pbtxt parsed with Triton's own
protobuf definitions; the DeepStream config's keys and values, and its pixel-input model against the bundle."""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from edgekit.data.images import collect_images, read_image
from edgekit.data.preprocess import preprocess
from edgekit.runtime.bundle import read_manifest
from edgekit.runtime.model import BundleModel
from edgekit.serve.tritonserver import Endpoints
from tests.conftest import assert_json_schema, predictions


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split()[2] != "Z"  # a zombie has ended
    except OSError:
        return False


def _images(folder: Path, count: int) -> list[Path]:
    classes = sorted(p for p in folder.iterdir() if p.is_dir())
    return [sorted(c.iterdir())[i] for i in range(count // len(classes) + 1) for c in classes][:count]


def _predict_json(edgekit_cli: Any, bundle: Path, images: list[Path]) -> dict[str, dict]:
    result = edgekit_cli("predict", bundle, *images, "--json", "--top-k", "1")
    assert result.returncode == 0, result.stderr
    return {Path(p["file"]).name: p for p in predictions(result.stdout)}


def _infer(client_module: Any, client: Any, model: str, data: bytes, output: str = "PROBABILITIES") -> np.ndarray:
    tensor = np.frombuffer(data, np.uint8)[None]
    request = client_module.InferInput("IMAGE", list(tensor.shape), "UINT8")
    request.set_data_from_numpy(tensor)
    return client.infer(model, [request]).as_numpy(output)[0]


class Server:
    def __init__(self, process: subprocess.Popen[str], ready: dict, ports: list[int]) -> None:
        self.process, self.ready, self.ports = process, ready, ports


def _start_serve(bundle: Path, *extra: str) -> Server:
    free = Endpoints.on_free_ports()
    ports = [free.http_port, free.grpc_port, free.metrics_port]
    flags = ["--http-port", str(ports[0]), "--grpc-port", str(ports[1]), "--metrics-port", str(ports[2])]
    command = [sys.executable, "-m", "edgekit.cli.main", "serve", str(bundle), "--json", "--name", "fashion", *flags]
    command += extra
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = process.stdout.readline() if process.stdout else ""  # the ready record, once Triton answers
    if not line:
        process.wait(30)
        raise AssertionError(f"edgekit serve did not start: {process.stderr.read() if process.stderr else ''}")
    return Server(process, json.loads(line), ports)


@pytest.fixture(scope="module")
def served(bundle: Path) -> Any:
    server = _start_serve(bundle, "--max-image-bytes", "200000", "--max-batch-size", "8")
    yield server
    if server.process.poll() is None:
        server.process.kill()
        server.process.wait()


def test_serve_answers_like_predict_over_http_and_grpc_with_concurrent_clients(
    served: Server, bundle: Path, data_dirs: dict[str, Path], edgekit_cli: Any
) -> None:
    import tritonclient.grpc as grpc
    import tritonclient.http as http

    assert_json_schema(json.dumps(served.ready) + "\n", "serve")
    images = _images(data_dirs["val"], 24)
    expected = _predict_json(edgekit_cli, bundle, images)
    clients = {http: http.InferenceServerClient(f"127.0.0.1:{served.ports[0]}", concurrency=16),
               grpc: grpc.InferenceServerClient(f"127.0.0.1:{served.ports[1]}")}  # fmt: skip
    for module, client in clients.items():
        assert client.is_server_ready() and client.is_model_ready("fashion")
        for path in images[:6]:
            probabilities = _infer(module, client, "fashion", path.read_bytes())
            assert int(probabilities.argmax()) == expected[path.name]["index"], (module.__name__, path)
            np.testing.assert_allclose(probabilities.max(), expected[path.name]["prob"], rtol=1e-4)

    # 16 clients at once: the dynamic batcher groups them; every answer is still each image's own.
    def one(path: Path) -> int:
        client = http.InferenceServerClient(f"127.0.0.1:{served.ports[0]}")
        return int(_infer(http, client, "fashion", path.read_bytes()).argmax())

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(one, images * 2))
    assert answers == [expected[p.name]["index"] for p in images * 2]
    statistics = clients[http].get_inference_statistics("fashion")["model_stats"][0]
    assert statistics["execution_count"] < statistics["inference_count"], "no request was batched with another"

    # Triton's classification extension names the class with the label file the repository carries.
    tensor = np.frombuffer(images[0].read_bytes(), np.uint8)[None]
    request = http.InferInput("IMAGE", list(tensor.shape), "UINT8")
    request.set_data_from_numpy(tensor)
    output = http.InferRequestedOutput("PROBABILITIES", class_count=1)
    top = clients[http].infer("fashion", [request], outputs=[output]).as_numpy("PROBABILITIES")[0][0].decode()
    assert top.split(":")[2] == expected[images[0].name]["label"]


def test_bad_requests_get_4xx_and_the_server_keeps_serving(served: Server, data_dirs: dict[str, Path]) -> None:
    import tritonclient.grpc as grpc
    import tritonclient.http as http
    from tritonclient.utils import InferenceServerException

    base = f"http://127.0.0.1:{served.ports[0]}/v2/models/fashion/infer"

    def post(body: dict) -> int:
        request = urllib.request.Request(base, json.dumps(body).encode(), {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)

    not_an_image = {"inputs": [{"name": "IMAGE", "shape": [1, 5], "datatype": "UINT8", "data": [1, 2, 3, 4, 5]}]}
    wrong_type = {"inputs": [{"name": "IMAGE", "shape": [1, 2], "datatype": "FP32", "data": [1.0, 2.0]}]}
    wrong_shape = {"inputs": [{"name": "IMAGE", "shape": [1, 2, 2], "datatype": "UINT8", "data": [1, 2, 3, 4]}]}
    wrong_name = {"inputs": [{"name": "PIXELS", "shape": [1, 1], "datatype": "UINT8", "data": [1]}]}
    oversized = {"inputs": [{"name": "IMAGE", "shape": [1, 250_000], "datatype": "UINT8", "data": [0] * 250_000}]}
    for body in (not_an_image, wrong_type, wrong_shape, wrong_name, oversized):
        assert 400 <= post(body) < 500, body["inputs"][0]
    grpc_client = grpc.InferenceServerClient(f"127.0.0.1:{served.ports[1]}")
    with pytest.raises(InferenceServerException, match="not a usable image") as caught:
        _infer(grpc, grpc_client, "fashion", b"GIF89a but not really")
    assert "INVALID_ARGUMENT" in str(caught.value.status())

    # A bad request batched with good ones fails alone.
    good = _images(data_dirs["val"], 8)

    def one(data: bytes) -> str:
        client = http.InferenceServerClient(f"127.0.0.1:{served.ports[0]}")
        try:
            _infer(http, client, "fashion", data)
            return "ok"
        except InferenceServerException as exc:
            return str(exc.status())

    with concurrent.futures.ThreadPoolExecutor(9) as pool:
        results = list(pool.map(one, [b"\x89PNG broken", *(p.read_bytes() for p in good)]))
    assert results == ["400", *["ok"] * len(good)]
    with urllib.request.urlopen(f"http://127.0.0.1:{served.ports[0]}/v2/health/ready", timeout=10) as response:
        assert response.status == 200
    with urllib.request.urlopen(f"http://127.0.0.1:{served.ports[2]}/metrics", timeout=10) as response:
        metrics = response.read().decode()
    success = [line for line in metrics.splitlines() if line.startswith('nv_inference_request_success{model="fashion"')]
    assert success and float(success[0].split()[-1]) >= len(good)


def test_sigterm_stops_the_server_and_leaves_no_process(served: Server) -> None:
    """Runs after the other tests of the module's server: SIGTERM ends it cleanly, Triton included."""
    triton = served.ready["pid"]
    assert _alive(triton)
    served.process.send_signal(signal.SIGTERM)
    out, err = served.process.communicate(timeout=90)
    assert served.process.returncode == 0, err
    assert json.loads(out.splitlines()[-1])["status"] == "stopped"
    assert "Traceback" not in err
    deadline = time.monotonic() + 10
    while _alive(triton) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(triton)


def test_a_killed_serve_takes_its_server_with_it(bundle: Path) -> None:
    server = _start_serve(bundle)
    triton = server.ready["pid"]
    server.process.kill()  # SIGKILL: no handler runs; the server's parent-death signal ends it
    server.process.wait()
    deadline = time.monotonic() + 30
    while _alive(triton) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(triton)


def test_serve_refuses_a_taken_port_in_one_line(bundle: Path, edgekit_cli: Any) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = edgekit_cli("serve", bundle, "--http-port", port, timeout=120)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert "--http-port" in result.stderr and "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def repository(bundle: Path, tmp_path_factory: pytest.TempPathFactory, edgekit_cli: Any) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("triton") / "repo"
    result = edgekit_cli("export", "triton", bundle, "--out", out, "--name", "fashion", "--json")
    assert result.returncode == 0, result.stderr
    (record,) = assert_json_schema(result.stdout, "export triton")
    return out, record


def _config(path: Path) -> Any:
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def test_exported_repository_configs_parse_with_tritons_protobuf(repository: tuple[Path, dict], bundle: Path) -> None:
    repo, record = repository
    manifest = read_manifest(bundle)
    configs = {p.parent.name: _config(p) for p in repo.glob("*/config.pbtxt")}
    assert (
        set(configs) == set(record["models"]) == {"fashion", "fashion_preprocess", "fashion_model", "fashion_edgekit"}
    )
    for name, config in configs.items():
        assert config.name == name
        labels = [o.label_filename for o in config.output if o.label_filename]
        for label_file in labels:
            assert (repo / name / label_file).read_text().split("\n")[:-1] == list(manifest.classes)

    native = configs["fashion_model"]
    assert native.platform == "onnxruntime_onnx" and record["native"] == "onnxruntime_onnx"
    assert (repo / "fashion_model" / "1" / "model.onnx").read_bytes() == (bundle / manifest.model_file).read_bytes()
    (model_input,) = native.input
    assert model_input.name == manifest.input.name and list(model_input.dims) == [3, 64, 64]
    assert model_input.data_type == model_config_pb2.TYPE_FP32
    assert native.max_batch_size == 8 and native.dynamic_batching.max_queue_delay_microseconds == 2000
    assert [o.name for o in native.output] == [manifest.section("output")["name"]]
    assert list(native.output[0].dims) == [len(manifest.classes)]

    preprocess_config = configs["fashion_preprocess"]
    assert preprocess_config.backend == "python" and preprocess_config.input[0].allow_ragged_batch
    assert preprocess_config.output[0].name == model_input.name
    assert list(preprocess_config.output[0].dims) == list(model_input.dims)

    ensemble = configs["fashion"]
    assert ensemble.platform == "ensemble"
    steps = ensemble.ensemble_scheduling.step
    assert [s.model_name for s in steps] == ["fashion_preprocess", "fashion_model"]
    assert steps[0].output_map[model_input.name] == steps[1].input_map[model_input.name]
    assert steps[1].output_map[native.output[0].name] == ensemble.output[0].name
    for python_model in ("fashion_preprocess", "fashion_edgekit"):
        copy = repo / python_model / "1" / "bundle"
        assert read_manifest(copy, verify=True).files == manifest.files  # the copy verifies
        assert "TritonPythonModel" in (repo / python_model / "1" / "model.py").read_text()


def test_exported_repository_runs_on_tritonserver(
    repository: tuple[Path, dict], bundle: Path, data_dirs: dict[str, Path]
) -> None:
    """The repository's Python-backend models on the real binary (PyTriton's build has no ONNX Runtime
    backend, so the native model and the ensemble are checked by their configs above)."""
    import tritonclient.http as http

    from edgekit.serve.tritonserver import run_server

    repo, _ = repository
    endpoints = Endpoints.on_free_ports()
    model = BundleModel.open(bundle)
    images = _images(data_dirs["val"], 5)
    with run_server(repo, endpoints, models=("fashion_edgekit", "fashion_preprocess")):
        client = http.InferenceServerClient(f"127.0.0.1:{endpoints.http_port}")
        for path in images:
            image = read_image(path)
            tensor = _infer(http, client, "fashion_preprocess", path.read_bytes(), model.manifest.input.name)
            np.testing.assert_array_equal(tensor, preprocess(image, model.preprocessing))
            probabilities = _infer(http, client, "fashion_edgekit", path.read_bytes())
            np.testing.assert_allclose(probabilities, model.probabilities(tensor[None])[0], rtol=1e-5, atol=1e-6)


def test_export_never_overwrites_what_is_not_an_export(bundle: Path, tmp_path: Path, edgekit_cli: Any) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    for extra in ((), ("--force",)):
        result = edgekit_cli("export", "triton", bundle, "--out", mine, *extra)
        assert result.returncode == 2 and result.stderr.startswith("error: ") and "Traceback" not in result.stderr
    assert (mine / "notes.txt").read_text() == "keep me" and sorted(os.listdir(mine)) == ["notes.txt"]
    assert sorted(os.listdir(tmp_path)) == ["mine"]  # no staging folder left behind


@pytest.fixture(scope="module")
def pixel_bundle(trained: dict, data_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Compiled with --normalise-in-model: the model takes uint8 pixels, as the issue's DeepStream path."""
    from edgekit.pipeline.compile import compile_bundle
    from edgekit.pipeline.compile_config import CompileConfig
    from edgekit.targets import get_target

    out = tmp_path_factory.mktemp("pixels") / "bundle"
    config = CompileConfig(model=trained["path"], target=get_target("x86-cpu"), backend="onnxruntime", out=out,
                           normalise_in_model=True)  # fmt: skip
    compile_bundle(config)
    return out


@pytest.mark.parametrize("which", ["float input", "normalise in model"])
def test_deepstream_export_gives_nvinfer_the_models_own_normalisation(
    which: str, bundle: Path, pixel_bundle: Path, data_dirs: dict[str, Path], tmp_path: Path, edgekit_cli: Any
) -> None:
    import onnxruntime as ort

    from edgekit.serve.deepstream import keys_for

    source = bundle if which == "float input" else pixel_bundle
    out = tmp_path / "ds"
    args = ["export", "deepstream", source, "--out", out, "--images", data_dirs["val"], "--json"]
    result = edgekit_cli(*args, *(("--gie", "secondary", "--operate-on-gie-id", "3") if which == "float input" else ()))
    assert result.returncode == 0, result.stderr
    (record,) = assert_json_schema(result.stdout, "export deepstream")
    text = (out / record["config"]).read_text()
    assert text.splitlines()[2] == "[property]"
    keys = dict(line.split("=", 1) for line in text.splitlines()[3:])
    assert set(keys) <= keys_for("7.1")
    assert keys["net-scale-factor"] == "1.0" and keys["offsets"] == "0;0;0" and keys["model-color-format"] == "0"
    assert keys["network-type"] == "1" and keys["infer-dims"] == "3;64;64" and keys["onnx-file"] == "model.onnx"
    assert keys["output-blob-names"] == read_manifest(source).section("output")["name"]
    assert (keys["process-mode"], keys.get("operate-on-gie-id")) == (
        ("2", "3") if which == "float input" else ("1", None)
    )
    assert (out / "labels.txt").read_text().strip().split(";") == list(read_manifest(source).classes)

    # The exported model on nvinfer's input (float pixels 0..255, NCHW) is the bundle on edgekit's input.
    model = BundleModel.open(source)
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    for path in _images(data_dirs["val"], 4):
        edgekit_input = preprocess(read_image(path), model.preprocessing)[None]
        pixels = edgekit_input if model.preprocessing.normalise_in_model else _pixels(edgekit_input, model)
        nvinfer_input = pixels.transpose(0, 3, 1, 2).astype(np.float32)
        (got,) = session.run(None, {session.get_inputs()[0].name: nvinfer_input})
        np.testing.assert_allclose(got, model.runner.run(edgekit_input), rtol=1e-4, atol=1e-4)

    measured = record["agreement_with_edgekit"]
    every_image = len(collect_images([data_dirs["val"]]))
    assert measured["stretch"]["n"] == measured["keep_aspect"]["n"] == every_image
    chosen = record["scaling"]
    assert measured[chosen]["agreement"] >= max(m["agreement"] for m in measured.values())
    assert keys["maintain-aspect-ratio"] == ("1" if chosen == "keep_aspect" else "0")


def _pixels(batch: np.ndarray, model: BundleModel) -> np.ndarray:
    from edgekit.data.preprocess import pixels_of

    return pixels_of(batch, model.preprocessing)


def test_deepstream_export_without_images_says_it_did_not_measure(
    bundle: Path, tmp_path: Path, edgekit_cli: Any
) -> None:
    result = edgekit_cli("export", "deepstream", bundle, "--out", tmp_path / "ds", "--deepstream", "6.0")
    assert result.returncode == 0, result.stderr
    assert "not compared" in result.stderr
    assert json.loads((tmp_path / "ds" / "deepstream.json").read_text())["agreement_with_edgekit"] is None
    bad = edgekit_cli("export", "deepstream", bundle, "--out", tmp_path / "ds2", "--deepstream", "5.0")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_deepstream_export_of_a_jetson_int8_bundle_runs_here(orin_int8: dict, tmp_path: Path, edgekit_cli: Any) -> None:
    """A TensorRT bundle's Q/DQ file is checked on the reference runtime (no TensorRT here); nvinfer builds INT8."""
    result = edgekit_cli("export", "deepstream", orin_int8["path"], "--out", tmp_path / "ds", "--json")
    assert result.returncode == 0, result.stderr
    (record,) = assert_json_schema(result.stdout, "export deepstream")
    assert record["keys"]["network-mode"] == "1" and "int8" in record["keys"]["model-engine-file"]
    assert record["max_output_difference"] < 1e-3
