"""Issue 32's benchmark: a bundle behind `edgekit serve` (a real tritonserver, edgekit's Python-backend model,
Triton's dynamic batcher) against in-process `predict` on the same bundle and the same images, timed in turns.

- The model: GoogLeNet at 224² (torchvision's layout, random weights: throughput does not depend on them),
  compiled FP32 for x86-cpu by `edgekit compile` (the backend it chooses).
- The images: 32 camera-sized JPEGs (1280×720) cut from scikit-learn's two sample photos.
- In-process: `BundleModel.predict` on the files (what `edgekit predict` runs: decode workers, batches of 8).
- Server: the server `edgekit serve` starts, with its defaults, queried over HTTP by 1, 4 and 16 concurrent
  clients (tritonclient, one thread each), each sending one file per request; the clients run on the same
  machine and their cost counts against the server.
- One burst = the 32 images through one of those paths; the bursts are timed in turns by the one timing loop
  (`measure.latency.time_in_turns`): images/s = 32 / the burst's p50. Per-request latency (p50, p99) is
  kept from every counted burst.

Target: at 16 clients, the server reaches ≥ 0.8× the in-process throughput.

    .venv/bin/python benchmarks/serving.py [--out benchmarks/results] [--iterations 16]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import importlib.metadata
import json
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision
from PIL import Image

from edgekit.core.percentiles import percentile_or_none
from edgekit.core.progress import Progress
from edgekit.core.threads import resolve_threads
from edgekit.measure.environment import environment
from edgekit.measure.latency import TimingProtocol, time_in_turns
from edgekit.pipeline.compile import compile_bundle
from edgekit.pipeline.compile_config import CompileConfig
from edgekit.runtime.model import BundleModel
from edgekit.serve.triton_repository import TritonSettings, serving_repository
from edgekit.serve.tritonserver import Endpoints, run_server
from edgekit.targets import get_target

CLIENTS = (1, 4, 16)
IMAGES = 32
TARGET = 0.8


def _images(folder: Path) -> list[Path]:
    from sklearn.datasets import load_sample_images

    folder.mkdir(parents=True)
    photos = [Image.fromarray(p) for p in load_sample_images().images]
    rng = np.random.default_rng(0)
    files = []
    for i in range(IMAGES):
        photo = photos[i % len(photos)]
        scale = 1280 / min(photo.size) * rng.uniform(1.0, 1.3)
        big = photo.resize((round(photo.width * scale), round(photo.height * scale)), Image.BICUBIC)
        left, top = rng.integers(0, big.width - 1280 + 1), rng.integers(0, big.height - 720 + 1)
        path = folder / f"frame-{i:02d}.jpg"
        big.crop((left, top, left + 1280, top + 720)).save(path, quality=90)
        files.append(path)
    return files


def _bundle(work: Path, progress: Progress) -> Path:
    checkpoint = work / "googlenet.pt"
    model = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=True, num_classes=10)
    torch.save({"model_state_dict": model.state_dict(), "arch": "googlenet",
                "classes": [f"class{i}" for i in range(10)]}, checkpoint)  # fmt: skip
    out = work / "bundle"
    config = CompileConfig(model=checkpoint, target=get_target("x86-cpu"), out=out, resize=256, crop=224)
    compile_bundle(config, progress)
    return out


def _server_burst(url: str, files: list[bytes], clients: int, pending: list[float]) -> Callable[[], None]:
    """One burst through the server by `clients` concurrent clients; its request latencies land in `pending`
    (kept by the timing loop's `after` hook only for counted bursts)."""
    import tritonclient.http as http

    pool = concurrent.futures.ThreadPoolExecutor(clients)
    local = threading.local()  # tritonclient.http's connections are gevent's: each belongs to its thread

    def client(index: int) -> list[float]:
        if not hasattr(local, "connection"):
            local.connection = http.InferenceServerClient(url)
        connection, taken = local.connection, []
        for data in files[index::clients]:
            tensor = np.frombuffer(data, np.uint8)[None]
            request = http.InferInput("IMAGE", list(tensor.shape), "UINT8")
            request.set_data_from_numpy(tensor, binary_data=True)
            start = time.perf_counter()
            connection.infer("bench", [request])
            taken.append((time.perf_counter() - start) * 1000.0)
        return taken

    def burst() -> None:
        pending.clear()
        for taken in pool.map(client, range(clients)):
            pending.extend(taken)

    return burst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--iterations", type=int, default=16, help="timed bursts per path")
    parser.add_argument("--render", action="store_true", help="only rewrite the .md from the .json")
    args = parser.parse_args()
    if args.render:
        (args.out / "serving.md").write_text(render(json.loads((args.out / "serving.json").read_text())))
        return
    progress = Progress()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        files = _images(work / "images")
        bundle = _bundle(work, progress)
        model = BundleModel.open(bundle)
        settings = TritonSettings(name="bench")  # what `edgekit serve` runs by default
        repo = work / "repository"
        repo.mkdir()
        serving_repository(bundle, repo, settings)
        endpoints = Endpoints.on_free_ports()
        data = [path.read_bytes() for path in files]
        with run_server(repo, endpoints):
            calls: dict[str, Callable[[], object]] = {"in-process predict": lambda: model.predict(files)}
            hooks: list[Any] = [None]
            latencies: dict[str, list[float]] = {}
            for n in CLIENTS:
                label, pending, kept = f"server, {n} clients", [], []  # type: ignore[var-annotated]
                calls[label] = _server_burst(f"127.0.0.1:{endpoints.http_port}", data, n, pending)
                hooks.append(lambda pending=pending, kept=kept: kept.extend(pending))
                latencies[label] = kept
            protocol = TimingProtocol(warmup=1, iterations=args.iterations, block=2, settle=1)
            timings = time_in_turns(list(calls.values()), protocol, [IMAGES] * len(calls), hooks, progress, "bursts")
    rows = []
    for (label, _), timing in zip(calls.items(), timings):
        taken = latencies.get(label, [])
        rows.append({"path": label, "images_per_s": timing.images_per_s, "burst": timing.to_dict(),
                     "request_ms": {"n": len(taken), "p50": percentile_or_none(taken, 50) if taken else None,
                                    "p99": percentile_or_none(taken, 99) if taken else None}})  # fmt: skip
    results = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "environment": environment(resolve_threads(0)),
        "triton": {name: importlib.metadata.version(name) for name in ("nvidia-pytriton", "tritonclient")},
        "minutes": round((time.perf_counter() - started) / 60, 1),
        "model": "GoogLeNet 224², FP32, x86-cpu (edgekit compile's choice of backend), 10 classes",
        "backend": model.backend,
        "images": f"{IMAGES} JPEGs, 1280×720, from scikit-learn's sample photos",
        "server": "edgekit serve defaults: " + json.dumps({k: v for k, v in vars(settings).items() if k != "name"}),
        "protocol": {"warmup": 1, "iterations": args.iterations, "block": 2, "settle": 1},
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "serving.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "serving.md").write_text(render(results))


def render(results: dict[str, Any]) -> str:
    env = results["environment"]
    baseline = next(r for r in results["rows"] if r["path"] == "in-process predict")["images_per_s"]
    lines = [
        "# edgekit serve (Triton) against in-process predict",
        "",
        f"Run {results['date']} on {env.get('cpu', '?')} ({env.get('cores', env.get('threads', '?'))} cores); "
        f"Python {env.get('python', '?')}; "
        + ", ".join(f"{k} {v}" for k, v in env.get("libraries", {}).items())
        + "; "
        + ", ".join(f"{k} {v}" for k, v in results.get("triton", {}).items())
        + f"; {results['minutes']} min.",
        "",
        f"Model: {results['model']}, backend {results['backend']}. Images: {results['images']}. Server: "
        f"{results['server']}. A burst is all {IMAGES} images through one path; bursts of the four paths timed in "
        f"turns (warm-up, {results['protocol']['iterations']} counted bursts each). The clients run on the same "
        "machine as the server.",
        "",
        "| path | images/s (burst p50) | × in-process | request p50 | request p99 | requests |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in results["rows"]:
        request = row["request_ms"]
        p50 = f"{request['p50']:.1f} ms" if request.get("p50") is not None else "—"
        p99 = f"{request['p99']:.1f} ms" if request.get("p99") is not None else "— (too few)"
        lines.append(
            f"| {row['path']} | {row['images_per_s']:.1f} | {row['images_per_s'] / baseline:.2f}× | {p50} | {p99} "
            f"| {request['n'] or '—'} |"
        )
    at16 = next(r for r in results["rows"] if r["path"] == f"server, {CLIENTS[-1]} clients")["images_per_s"]
    met = "met" if at16 >= TARGET * baseline else "missed"
    lines += [
        "",
        f"Target: at {CLIENTS[-1]} clients ≥ {TARGET}× the in-process throughput: {at16 / baseline:.2f}×, {met}.",
        "",
        "Reproduce: `.venv/bin/python benchmarks/serving.py` (`--render` rewrites this file from the JSON).",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
