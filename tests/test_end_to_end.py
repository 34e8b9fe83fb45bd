"""From an encoded photo to a label: the fast JPEG decode, per-stage timing from files, predict's decode pool
and `compile --preprocess fast`, on real photos (scikit-learn's sample images) at camera sizes."""

from __future__ import annotations

import dataclasses
import json
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import edgekit
from edgekit.core.errors import EdgekitError
from edgekit.data.images import decode_image, read_file, read_image
from edgekit.data.preprocess import PreprocessSpec, resize_and_crop
from edgekit.measure.stats import wilson
from edgekit.runtime.model import ordered_map
from tests.conftest import json_records


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sklearn.datasets import load_sample_image

    folder = tmp_path_factory.mktemp("photos")
    china = Image.fromarray(load_sample_image("china.jpg"))
    china.resize((1920, 1080), Image.Resampling.BICUBIC).save(folder / "china-1080p.jpg", quality=90)
    flower = Image.fromarray(load_sample_image("flower.jpg"))
    flower.resize((4000, 3000), Image.Resampling.BICUBIC).save(folder / "flower-12mp.jpg", quality=90)
    china.resize((1920, 1080)).save(folder / "china-1080p.png")  # not a JPEG: no DCT scaling
    china.save(folder / "china-small.jpg", quality=90)  # 640×427: less than twice 256, decoded in full
    return folder


def test_fast_decode_scales_large_jpegs_down_to_the_resize_target_and_no_further(photos: Path) -> None:
    assert read_image(photos / "china-1080p.jpg", scale_to=256).size == (480, 270)  # 1/4: 270 ≥ 256 > 135
    assert read_image(photos / "flower-12mp.jpg", scale_to=256).size == (500, 375)  # 1/8
    assert read_image(photos / "china-1080p.jpg", scale_to=600).size == (1920, 1080)  # 1/2 would be 540 < 600
    # The fast path asks for twice its resize target: 256 → 1080p at 1/2, 12 MP at 1/4; 72 → 1080p at 1/4.
    for spec, name, size in (
        (PreprocessSpec(decode="fast"), "china-1080p.jpg", (960, 540)),
        (PreprocessSpec(decode="fast"), "flower-12mp.jpg", (1000, 750)),
        (PreprocessSpec(resize=72, crop=64, decode="fast"), "china-1080p.jpg", (480, 270)),
    ):
        assert read_image(photos / name, scale_to=spec.scale_to).size == size
    assert PreprocessSpec().scale_to is None
    for name in ("china-1080p.png", "china-small.jpg"):
        full, fast = read_image(photos / name), read_image(photos / name, scale_to=256)
        assert full.size == fast.size and np.array_equal(np.asarray(full), np.asarray(fast))
    # Bytes read first, then decoded: the same pixels as reading the file, with the same checks.
    data = read_file(photos / "china-1080p.jpg")
    assert np.array_equal(np.asarray(decode_image(data)), np.asarray(read_image(photos / "china-1080p.jpg")))
    with pytest.raises(ValueError, match="not an image"):
        decode_image(b"not a jpeg")
    with pytest.raises(ValueError, match="is more than"):
        decode_image(data, max_pixels=1000)


def test_fast_path_stays_close_to_the_exact_transform(photos: Path) -> None:
    """The fast path's input differs from the exact one by the DCT-domain downscale only: the same crop of
    the same scene, within a grey level on average and a few at the 99th percentile (decoded down to the
    resize target itself, china.jpg's 1080p crop moves by 2.2 on average and by 15 at the 99th percentile).
    The exact path is tested bit for bit against torchvision in test_preprocess.py."""
    exact_spec, fast_spec = PreprocessSpec(), PreprocessSpec(decode="fast")
    for name in ("china-1080p.jpg", "flower-12mp.jpg"):
        exact = np.asarray(resize_and_crop(read_image(photos / name), exact_spec), np.int16)
        fast = np.asarray(resize_and_crop(read_image(photos / name, scale_to=fast_spec.scale_to), fast_spec), np.int16)
        assert exact.shape == fast.shape == (224, 224, 3)
        assert np.mean(np.abs(exact - fast)) < 1 and np.percentile(np.abs(exact - fast), 99) <= 4
    assert PreprocessSpec.from_dict({**fast_spec.to_dict()}) == fast_spec
    with pytest.raises(EdgekitError, match="decode"):
        PreprocessSpec(decode="turbo")


def test_fast_resize_resamples_only_the_crop_yet_gives_the_exact_pixels_within_rounding(photos: Path) -> None:
    image = read_image(photos / "china-1080p.png")  # no DCT scaling: the resize alone differs
    for spec in (PreprocessSpec(), PreprocessSpec(resize=72, crop=64)):
        exact = np.asarray(resize_and_crop(image, spec), np.int16)
        fast = np.asarray(resize_and_crop(image, dataclasses.replace(spec, decode="fast")), np.int16)
        assert exact.shape == fast.shape == (spec.crop, spec.crop, 3)
        assert np.abs(exact - fast).max() <= 1 and np.mean(exact != fast) < 0.01


def test_ordered_map_keeps_order_bounds_its_lookahead_and_stops_early() -> None:
    started, lock = [0], threading.Lock()

    def work(item: int) -> int:
        with lock:
            started[0] += 1
        return item * item

    taken: list[int] = []
    results = ordered_map(work, range(1000), workers=4, ahead=6)
    for value in results:
        taken.append(value)
        assert started[0] - len(taken) <= 6  # never more than `ahead` computed and not yet taken
        if len(taken) == 20:
            break
    results.close()  # what a consumer stopping early does: nothing more is started
    assert taken == [i * i for i in range(20)] and started[0] <= 26
    assert list(ordered_map(work, range(50), workers=1, ahead=1)) == [i * i for i in range(50)]


def test_predict_through_the_decode_pool_gives_what_one_thread_gives(bundle: Path, photos: Path, tmp_path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 truncated")
    files = [*sorted(photos.iterdir()), broken, *sorted(photos.iterdir())]
    model = edgekit.load(bundle)
    serial = list(model.iter_predict(files, top_k=3, batch_size=3, decode_workers=1))
    pooled = list(model.iter_predict(files, top_k=3, batch_size=3, decode_workers=4))
    assert [p.to_dict() for p in pooled] == [p.to_dict() for p in serial]
    assert pooled[4].error and all(p.error is None for i, p in enumerate(pooled) if i != 4)


def test_bench_times_each_stage_from_encoded_files(bundle: Path, photos: Path, run_cli, tmp_path: Path) -> None:
    status, stdout, stderr = run_cli(
        "bench", bundle, "--images", photos, "--batch-sizes", "1,2", "--iterations", "2", "--throughput",
        "--out", tmp_path / "bench", "--json",
    )  # fmt: skip
    assert status == 0, stderr
    results = json.loads(stdout)
    trip = results["end_to_end"]
    assert trip["from"] == str(photos) and trip["shipped_decode"] == "exact"
    for path in ("exact", "fast"):
        row = trip[path]
        assert row["images"] == 4 and row["decode"] == path
        stages = [row[f"{s}_ms"] for s in ("read", "decode", "resize_crop", "normalise", "network", "postprocess")]
        assert all(value > 0 for value in stages)
        # Each file's trip holds its network call, so the trip's median is at least the network's; the four files
        # go round to 50 trips, which support a p90 (`core.percentiles`).
        assert row["end_to_end_p50_ms"] >= row["network_ms"] and row["trips"] == 50
    agreement = trip["fast_vs_exact"]
    agreed = round(agreement["top1_agreement"] * 4)
    assert agreement["images"] == 4 and agreement["top1_agreement_ci95"] == pytest.approx(list(wilson(agreed, 4)))
    assert results["stages"]["decode_ms"] == trip["exact"]["decode_ms"]  # the report's stage table: what ships
    throughput = results["throughput"]
    assert throughput["batch"] == 2 and throughput["images"] == 128 and throughput["images_per_s"] > 0
    markdown = (tmp_path / "bench" / "bench.md").read_text()
    assert "From an encoded file to a label" in markdown and "| fast |" in markdown
    status, _, stderr = run_cli("bench", bundle, "--images", tmp_path / "nowhere", "--out", tmp_path / "b2")
    assert status == 2 and stderr.startswith("error:") and "does not exist" in stderr


def test_compile_preprocess_fast_records_its_measured_agreement(
    trained: dict, photos: Path, data_dirs: dict, run_cli, tmp_path: Path
) -> None:
    out = tmp_path / "fast"
    status, stdout, stderr = run_cli(
        "compile", trained["path"], "--preprocess", "fast", "--backend", "onnxruntime", "--val", photos,
        "--out", out, "--json",
    )  # fmt: skip
    assert status == 0, stderr
    manifest = json.loads(stdout)
    assert manifest["preprocessing"]["decode"] == "fast"
    check = manifest["preprocessing_check"]
    # The model's resize is 72: the three JPEGs (even the 640×427 one) decode at a smaller DCT scale, the PNG not.
    assert check["images"] == 4 and check["jpeg_dct_scaled"] == 3
    agreed = round(check["top1_agreement_with_exact"] * 4)
    assert check["top1_agreement_ci95"] == pytest.approx(list(wilson(agreed, 4)))
    model = edgekit.load(out)
    assert model.preprocessing.decode == "fast"
    assert model.predict([photos / "flower-12mp.jpg"])[0].label in manifest["classes"]
    status, shown, _ = run_cli("inspect", out)
    assert status == 0 and "fast decode" in shown and "3 DCT-scaled" in shown


def _lossless_video(frames: list[Image.Image], path: Path, fps: int = 10) -> Path:
    """FFV1 in Matroska with planar RGB: decoded frames are the input pixels exactly."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=fps)
        stream.width, stream.height = frames[0].size
        stream.pix_fmt = "bgr0"
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_image(image)))
        container.mux(stream.encode())
    return path


@pytest.fixture
def clip(data_dirs: dict, tmp_path: Path) -> tuple[Path, list[Image.Image]]:
    files = [f for folder in sorted(data_dirs["val"].iterdir()) for f in sorted(folder.iterdir())[:2]]
    frames = [Image.open(f).convert("RGB").resize((96, 96), Image.Resampling.BICUBIC) for f in files]
    return _lossless_video(frames, tmp_path / "clip.mkv"), frames


def test_video_file_is_predicted_frame_by_frame_like_its_frames_as_images(
    bundle: Path, clip: tuple[Path, list[Image.Image]], run_cli
) -> None:
    video, frames = clip
    status, stdout, stderr = run_cli("predict", bundle, video, "--json", "--top-k", "2")
    assert status == 0, stderr
    lines = json_records(stdout)
    records, summary = lines[:-1], lines[-1]
    assert {r["type"] for r in records} == {"frame"} and summary["type"] == "summary"
    expected = edgekit.load(bundle).predict(frames, top_k=2)
    assert [r["frame"] for r in records] == list(range(len(frames)))
    assert [r["label"] for r in records] == [p.label for p in expected]
    assert [r["prob"] for r in records] == pytest.approx([p.prob for p in expected], abs=1e-6)
    assert records[1]["time_s"] == pytest.approx(0.1)  # 10 fps
    assert summary["frames_read"] == summary["frames_predicted"] == len(frames) and summary["frames_dropped"] == 0
    assert summary["latency_p50_ms"] > 0 and summary["latency_p99_ms"] is None and "fps" in stderr  # < 500 frames
    status, stdout, _ = run_cli("predict", bundle, video, "--every", "3", "--json")
    assert [r["frame"] for r in json_records(stdout, "frame")] == list(range(0, len(frames), 3))


def test_a_frame_budget_drops_the_frames_that_waited_too_long(
    bundle: Path, clip: tuple[Path, list[Image.Image]], run_cli
) -> None:
    """A budget far below any inference time: the file is paced like a camera and every frame that waited
    past it is dropped rather than predicted late."""
    video, frames = clip
    status, stdout, stderr = run_cli("predict", bundle, video, "--frame-budget", "0.001", "--json")
    assert status == 0, stderr
    (summary,) = json_records(stdout, "summary")
    assert summary["frames_read"] == len(frames) and summary["frames_dropped"] > 0
    assert summary["frames_predicted"] + summary["frames_dropped"] == len(frames)


def test_ctrl_c_stops_a_stream_cleanly_with_its_summary(bundle: Path, data_dirs: dict, tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    image = Image.open(next(next(data_dirs["val"].iterdir()).iterdir())).convert("RGB").resize((64, 64))
    video = _lossless_video([image] * 200, tmp_path / "long.mkv", fps=20)  # 10 s, paced by the budget
    # A shell that starts jobs in the background (CI runners may) leaves SIGINT ignored in its children;
    # a user's terminal does not: the child gets the default disposition, as it has at a prompt.
    process = subprocess.Popen(
        [sys.executable, "-m", "edgekit.cli.main", "predict", str(bundle), str(video), "--frame-budget", "1000"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    assert process.stdout is not None
    first = process.stdout.readline()  # a frame was predicted: the stream is running
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert first.startswith("frame 0") and process.returncode == 0, stderr
    assert "stopped by Ctrl-C" in stderr and "Traceback" not in stderr
    assert len(stdout.splitlines()) + 1 < 200  # it did stop


def test_unreadable_video_sources_exit_2(bundle: Path, tmp_path: Path, edgekit_cli) -> None:
    fake = tmp_path / "fake.mp4"
    fake.write_bytes(b"not a video at all")
    for source in (fake, tmp_path / "missing.mkv"):
        done = edgekit_cli("predict", bundle, source)
        assert done.returncode == 2 and done.stderr.startswith("error: cannot open video"), done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
    done = edgekit_cli("predict", bundle, fake, fake)
    assert done.returncode == 2 and "one video source at a time" in done.stderr
