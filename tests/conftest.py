"""Shared fixtures: real Fashion-MNIST images and GoogLeNets trained on them by edgekit itself.

Training is small (7 classes × 100 images, 64×64 inputs, four epochs, ~30 s) so the suite stays fast on 2 cores, but the
models are trained on real images and predict with real confidence, which is what parity needs.
"""

from __future__ import annotations

import os


def _pin_this_worker() -> None:
    """Under pytest-xdist (`make test` runs two workers), each worker gets its own share of the cores, set
    before NumPy, torch and the runtimes start their thread pools: tests (and the edgekit processes they start,
    which inherit it) then use those cores. Left to share all of them, two workers' thread pools spin against
    each other: measured here, the suite ran slower on two workers sharing both cores than on one."""
    worker, count = os.environ.get("PYTEST_XDIST_WORKER"), int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if worker and worker.startswith("gw") and 1 < count <= len(cpus):
        os.sched_setaffinity(0, cpus[int(worker[2:]) % count :: count])


_pin_this_worker()

import dataclasses
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torchvision
from filelock import FileLock

from edgekit.data.fashion_mnist import dataset_root, write_image_folder
from edgekit.model.finetune import FinetuneConfig, run_finetune
from edgekit.train.settings import TrainingSettings

REPOSITORY = Path(__file__).resolve().parent.parent

# The suite loads its own bundles hundreds of times: it runs as a fleet that trusts them would, parsing in this
# process (a child per load would add minutes). tests/test_isolation.py turns the default back on.
os.environ.setdefault("EDGEKIT_ISOLATE_PARSING", "0")

NUM_CLASSES = 7
TRAINING_THREADS = 2  # the suite's models are trained as on the 2-core machine its thresholds were tuned on


def made_once(tmp_path_factory: pytest.TempPathFactory, name: str, make: Callable[[Path], None]) -> Path:
    """A folder `make` fills once for the whole run: under pytest-xdist the first worker to ask makes it while
    the others wait, so a costly session fixture (a trained model, a device venv) is not made per worker."""
    root = tmp_path_factory.getbasetemp()
    if "PYTEST_XDIST_WORKER" in os.environ:
        root = root.parent  # the run's temporary root: the workers' own folders are inside it
    folder = root / f"made-once-{name}"
    with FileLock(f"{folder}.lock"):
        if not (folder / ".made").exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            make(folder)
            (folder / ".made").touch()
    return folder


@pytest.fixture(scope="session")
def data_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if not (dataset_root() / "t10k-images-idx3-ubyte.gz").exists():
        pytest.fail("Fashion-MNIST is missing: apt-get install -y dataset-fashion-mnist (make test does this)")
    root = tmp_path_factory.mktemp("fashion")
    classes = tuple(range(NUM_CLASSES))
    return {
        "train": write_image_folder(root / "train", "train", 100, classes=classes, seed=0),
        "val": write_image_folder(root / "val", "test", 20, classes=classes, seed=1),
    }


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory, data_dirs: dict[str, Path]) -> dict:
    """An edgekit checkpoint (aux heads present, transform_input on) trained on real images.

    Users start from ImageNet weights, which torchvision pairs with transform_input=True. Those
    cannot be downloaded here, so a torchvision-initialised 1000-class GoogLeNet file stands in for
    them and the whole network is trained (body LR not reduced, as nothing in it is pretrained).
    """

    def make(root: Path) -> None:
        torch.manual_seed(0)
        standin = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=True)
        weights = root / "googlenet-imagenet-standin.pth"
        torch.save(standin.state_dict(), weights)
        config = FinetuneConfig(
            data=str(data_dirs["train"]), val=data_dirs["val"], out=root / "googlenet.pt", weights=str(weights),
            body_lr_mult=1.0, epochs=4, lr=0.02, resize=72, crop=64, augment=False,
            # The model the INT8 tests were tuned on: FP32 NCHW, and 2 threads wherever the worker runs (training
            # numerics follow the thread count, and a make test worker has one core).
            training=TrainingSettings(amp="off", channels_last=False), threads=TRAINING_THREADS,
        )  # fmt: skip
        run_finetune(config)

    out = made_once(tmp_path_factory, "model", make) / "googlenet.pt"
    return {"path": out, "checkpoint": torch.load(out, weights_only=True)}


@pytest.fixture(scope="session")
def torch_model(trained: dict) -> torch.nn.Module:
    """The trained network as the user holds it in PyTorch: eval mode, aux heads ignored."""
    from edgekit.model import families

    model = families.build("googlenet", NUM_CLASSES, transform_input=True, aux_logits=True)
    model.load_state_dict(trained["checkpoint"]["model_state_dict"])
    return families.deployable(model)


@pytest.fixture()
def run_cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """Run `edgekit ARGS...` in-process: (exit status, stdout, stderr)."""
    from edgekit.cli.main import main

    def run(*args: str | Path) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            main([str(a) for a in args])
            status = 0
        except SystemExit as exc:
            status = exc.code if isinstance(exc.code, int) else 1
        captured = capsys.readouterr()
        return status, captured.out, captured.err

    return run


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.asarray(a) == np.asarray(b)))


@pytest.fixture(scope="session")
def bundle(trained: dict, data_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle compiled once from the trained checkpoint (read-only for tests: copy before changing).

    Its backend is named: FP32 otherwise goes to whichever CPU backend measures faster on the machine at
    hand, and the tests that use this bundle speak of ONNX Runtime (the device install's runtime)."""
    from edgekit.pipeline.compile import compile_bundle
    from edgekit.pipeline.compile_config import CompileConfig
    from edgekit.targets import get_target

    out = tmp_path_factory.mktemp("bundles") / "fashion-x86"
    config = CompileConfig(
        model=trained["path"], target=get_target("x86-cpu"), backend="onnxruntime", out=out, val=data_dirs["val"]
    )
    compile_bundle(config)
    return out


@pytest.fixture(scope="session")
def image(data_dirs: dict[str, Path]) -> Path:
    """One real labelled image file."""
    return sorted((data_dirs["val"] / "coat").iterdir())[0]


@pytest.fixture(scope="session")
def edgekit_cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run `edgekit ARGS...` as a user does, in its own process: what a claim about stderr, exit codes and
    tracebacks must be tested with (the in-process `run_cli` never prints a traceback)."""

    def run(*args: str | Path, timeout: float = 300, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "edgekit.cli.main", *map(str, args)]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, **kwargs)

    return run


def assert_thread_safe(model: Any, images: list[Path], threads: int = 8, calls: int = 120) -> None:
    """`predict` and `probabilities` from `threads` threads at once give exactly the sequential results.

    The images must give different outputs (asserted), or a runtime that hands one thread another's
    result would pass.
    """
    from concurrent.futures import ThreadPoolExecutor

    from edgekit.data.images import read_image
    from edgekit.data.preprocess import preprocess

    inputs = [preprocess(read_image(path), model.preprocessing)[None] for path in images]
    expected = [model.probabilities(x) for x in inputs]
    expected_predictions = [model.predict([path], top_k=3)[0] for path in images]
    assert len({e.tobytes() for e in expected}) == len(images), "the test images must give different outputs"

    def probabilities(call: int) -> bool:
        return bool(np.array_equal(model.probabilities(inputs[call % len(inputs)]), expected[call % len(inputs)]))

    def predict(call: int) -> bool:
        return model.predict([images[call % len(images)]], top_k=3)[0] == expected_predictions[call % len(images)]

    with ThreadPoolExecutor(threads) as pool:
        same = list(pool.map(probabilities, range(calls))) + list(pool.map(predict, range(calls)))
    assert all(same), f"{same.count(False)} of {2 * calls} calls from {threads} threads differ from sequential ones"


@pytest.fixture(scope="session")
def distinct_images(data_dirs: dict[str, Path]) -> list[Path]:
    """Two images of each class: outputs that differ from image to image."""
    return [path for folder in sorted(data_dirs["val"].iterdir()) for path in sorted(folder.iterdir())[:2]]


@pytest.fixture(scope="session")
def device_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A device install (`pip install edgekit` + the bundle's runtime) in a fresh venv: what a board runs."""

    def make(folder: Path) -> None:
        venv = folder / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        # The bundle is an ONNX Runtime one: the runtime it names is what the device adds to edgekit.
        result = subprocess.run(
            [*pip, "-c", str(REPOSITORY / "constraints.txt"), str(REPOSITORY), "onnxruntime"],
            capture_output=True, text=True, timeout=1200, cwd=REPOSITORY,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]

    return made_once(tmp_path_factory, "device", make) / "venv"


@pytest.fixture(scope="session")
def orin_int8(trained: dict, data_dirs: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """`edgekit compile --target jetson-orin-nx --precision int8` on this machine (no TensorRT, no GPU).

    The guard off: the TensorRT bundle is the subject (the guard has its own tests, test_ladder and
    test_quantize), and this briefly trained model's INT8 agreement sits at the 99 % floor, where the guard's
    verdict turns on a few images."""
    from edgekit.cli.main import main

    def make(folder: Path) -> None:
        args = ["compile", str(trained["path"]), "--target", "jetson-orin-nx", "--precision", "int8"]
        args += ["--calib", str(data_dirs["train"]), "--calib-size", "64", "--val", str(data_dirs["val"])]
        args += ["--min-agreement", "0"]
        with pytest.raises(SystemExit) as exit_info:
            main([*args, "--out", str(folder / "orin-int8")])
        assert exit_info.value.code == 0

    out = made_once(tmp_path_factory, "trt", make) / "orin-int8"
    return {"path": out, "manifest": json.loads((out / "manifest.json").read_text())}


def bundle_agreement_with_checkpoint(bundle: Path, checkpoint: Path, folder: Path) -> float:
    """Top-1 agreement of a compiled bundle with the PyTorch checkpoint it came from, on every image in
    `folder`, computed here (not read from the manifest): the bundle through `edgekit.load`, the checkpoint
    through torch on the same preprocessed inputs, with the transform_input the bundle recorded."""
    import edgekit
    from edgekit.data.batches import load_images
    from edgekit.data.images import collect_images
    from edgekit.data.preprocess import PreprocessSpec
    from edgekit.model.checkpoint import load_checkpoint

    manifest = json.loads((bundle / "manifest.json").read_text())
    files = collect_images([folder])
    spec = PreprocessSpec.from_dict(manifest["preprocessing"])
    inputs = load_images(files, dataclasses.replace(spec, normalise_in_model=False)).inputs
    module = load_checkpoint(checkpoint, transform_input=manifest["model"]["transform_input"]).module.eval()
    with torch.no_grad():
        reference = module(torch.from_numpy(inputs)).numpy().argmax(1)
    predicted = np.array([p.index for p in edgekit.load(bundle).predict(files)])
    return agreement(predicted, reference)


def json_records(stdout: str, record_type: str | None = None) -> list[dict]:
    """The records of a `--json` output (JSON Lines, each tagged with json_version and command); with
    `record_type`, only the records of that type (predict: "prediction", "error", "frame", "summary")."""
    records = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    assert all(record["json_version"] == 1 and record["command"] for record in records), stdout[:500]
    return [r for r in records if record_type is None or r.get("type") == record_type]


def predictions(stdout: str) -> list[dict]:
    """`predict --json`'s per-image records (predictions and unreadable files), in order."""
    return [r for r in json_records(stdout) if r.get("type") in ("prediction", "error")]


def assert_json_schema(stdout: str, command: str) -> list[dict]:
    """Every record of a `--json` output valid against its command's published schema
    (edgekit/cli/json_schemas/), which would fail if a field documented there went missing or changed type."""
    import jsonschema

    schema = json.loads((SCHEMAS / f"{command.replace(' ', '-')}.json").read_text())
    records = json_records(stdout)
    assert records, "no JSON records"
    for record in records:
        jsonschema.validate(record, schema)
    return records


SCHEMAS = Path(__file__).resolve().parent.parent / "edgekit" / "cli" / "json_schemas"
