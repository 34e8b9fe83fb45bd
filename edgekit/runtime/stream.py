"""Video streams: a file, a camera (/dev/videoN), an RTSP/HTTP URL (PyAV, FFmpeg inside) or, on a Jetson, a
GStreamer pipeline ("gst:..." through OpenCV built with GStreamer, as JetPack ships it), predicted frame by
frame.

A reader thread decodes frames into a small queue; the caller's thread runs the network. Without a frame
budget every Nth frame is predicted, in order (a file gives the same labels as its frames saved as images).
With a budget the source is treated as live: a file is paced by its timestamps, and a frame that waited
longer than the budget when the network is free is dropped, oldest first, so the output keeps up with the
camera instead of falling further behind.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from PIL import Image

from edgekit.core.errors import EdgekitError
from edgekit.core.percentiles import percentile_or_none

VIDEO_SUFFIXES = frozenset({".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".h264"})
URL_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "srt://")
INSTALL_AV = "pip install av (PyAV, FFmpeg bundled)"


def is_stream(source: str) -> bool:
    """Whether predict should read `source` as a video rather than as image files."""
    lowered = source.lower()
    return (
        lowered.startswith(URL_SCHEMES)
        or lowered.startswith("gst:")
        or lowered.startswith("/dev/video")
        or Path(source).suffix.lower() in VIDEO_SUFFIXES
    )


@dataclasses.dataclass(frozen=True)
class StreamOptions:
    every: int = 1  # predict every Nth frame
    frame_budget_ms: float | None = None  # live: drop frames that waited longer than this
    max_frames: int | None = None  # stop after this many frames read
    queue: int = 4  # decoded frames held at most


@dataclasses.dataclass(frozen=True)
class Frame:
    index: int
    time_s: float | None  # the frame's timestamp in the stream
    image: Image.Image
    captured: float  # time.monotonic() when it was decoded


@dataclasses.dataclass
class StreamStats:
    read: int = 0
    predicted: int = 0
    dropped: int = 0
    latencies_ms: list[float] = dataclasses.field(default_factory=list)
    started: float = dataclasses.field(default_factory=time.monotonic)
    stopped_by: str = "end of stream"

    def to_dict(self) -> dict[str, Any]:
        seconds = max(time.monotonic() - self.started, 1e-9)
        # Capture-to-label latency of live frames (not a benchmark: the frames are the user's); tails only where
        # the frame count supports them (`core.percentiles`).
        percentiles = {f"latency_p{q}_ms": percentile_or_none(self.latencies_ms, q) for q in (50, 90, 99)}
        return {"frames_read": self.read, "frames_predicted": self.predicted, "frames_dropped": self.dropped,
                "fps": self.predicted / seconds, "seconds": seconds, "stopped_by": self.stopped_by,
                **percentiles}  # fmt: skip


def _pyav_frames(source: str, paced: bool) -> Iterator[tuple[float | None, Image.Image]]:
    try:
        import av
    except ImportError:
        raise EdgekitError(f"reading video needs PyAV: {INSTALL_AV}") from None
    options = {"rtsp_transport": "tcp"} if source.lower().startswith("rtsp") else {}
    device = source.startswith("/dev/video")
    try:
        container = av.open(source, format="v4l2" if device else None, options=options, timeout=(10.0, 10.0))
    except (av.FFmpegError, OSError) as exc:
        raise EdgekitError(f"cannot open video {source}: {exc}") from None
    with container:
        if not container.streams.video:
            raise EdgekitError(f"{source} has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        start = time.monotonic()
        try:
            for frame in container.decode(stream):
                seconds = None if frame.pts is None or stream.time_base is None else float(frame.pts * stream.time_base)
                if paced and seconds is not None:  # a file treated as live: frames arrive at their own time
                    delay = start + seconds - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                yield seconds, frame.to_image()
        except av.FFmpegError as exc:
            raise EdgekitError(f"{source}: video decoding failed ({exc})") from None


def _gstreamer_frames(pipeline: str) -> Iterator[tuple[float | None, Image.Image]]:
    try:
        import cv2
    except ImportError:
        raise EdgekitError("a gst: pipeline needs OpenCV built with GStreamer (JetPack's python3-opencv)") from None
    capture = cv2.VideoCapture(pipeline, cv2.CAP_GSTREAMER)
    if not capture.isOpened():
        raise EdgekitError(f"OpenCV could not open the GStreamer pipeline {pipeline!r} (end it with an appsink)")
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            yield capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0, Image.fromarray(frame[:, :, ::-1])  # BGR → RGB
    finally:
        capture.release()


def read_frames(source: str, options: StreamOptions) -> Iterator[Frame]:
    """Frames of `source`, in order, each stamped with when it was decoded; `max_frames` stops early."""
    live = options.frame_budget_ms is not None
    paced = live and not source.startswith(("/dev/video", *URL_SCHEMES, "gst:"))
    frames = _gstreamer_frames(source[4:]) if source.startswith("gst:") else _pyav_frames(source, paced)
    for index, (seconds, image) in enumerate(frames):
        if options.max_frames is not None and index >= options.max_frames:
            return
        yield Frame(index, seconds, image, time.monotonic())


class FrameQueue:
    """Frames read on a thread into a bounded queue; when it is full the oldest frame is dropped."""

    def __init__(self, frames: Iterator[Frame], size: int, stats: StreamStats) -> None:
        self._queue: collections.deque[Frame] = collections.deque()
        self._size, self._stats = max(1, size), stats
        self._ready = threading.Condition()
        self._done = False
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, args=(frames,), name="edgekit-frames", daemon=True)
        self._thread.start()

    def _read(self, frames: Iterator[Frame]) -> None:
        try:
            for frame in frames:
                if self._stop.is_set():
                    break
                with self._ready:
                    if len(self._queue) >= self._size:
                        self._queue.popleft()
                        self._stats.dropped += 1
                    self._queue.append(frame)
                    self._stats.read += 1
                    self._ready.notify()
        except BaseException as exc:  # handed to the caller's thread, which reports it
            self._error = exc
        finally:
            with self._ready:
                self._done = True
                self._ready.notify()

    def get(self) -> Frame | None:
        with self._ready:
            while not self._queue and not self._done:
                self._ready.wait(0.5)
            if self._queue:
                return self._queue.popleft()
        if self._error is not None:
            raise self._error
        return None

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def predict_stream(
    model: Any, source: str, options: StreamOptions, top_k: int, stats: StreamStats
) -> Iterator[dict[str, Any]]:
    """One record per predicted frame: index, stream time, top-k and the frame's latency (decoded → label)."""
    if options.every < 1:
        raise EdgekitError("--every must be at least 1")
    frames = read_frames(source, options)
    if options.frame_budget_ms is None:  # every (Nth) frame, in order: nothing is dropped
        queue = None
        source_frames: Iterator[Frame | None] = frames
    else:
        queue = FrameQueue(frames, options.queue, stats)
        source_frames = iter(queue.get, None)
    budget_s = None if options.frame_budget_ms is None else options.frame_budget_ms / 1000.0
    try:
        for frame in source_frames:
            assert frame is not None
            if queue is None:
                stats.read += 1
            if frame.index % options.every:
                continue
            if budget_s is not None and time.monotonic() - frame.captured > budget_s:
                stats.dropped += 1  # waited past the budget: a newer frame is worth more
                continue
            prediction = next(model.iter_predict([frame.image], top_k=top_k, batch_size=1, decode_workers=1))
            latency = (time.monotonic() - frame.captured) * 1000.0
            stats.predicted += 1
            stats.latencies_ms.append(latency)
            record = {key: value for key, value in prediction.to_dict().items() if key != "file"}
            yield {"frame": frame.index, "time_s": frame.time_s, **record, "latency_ms": latency}
    finally:
        if queue is not None:
            queue.close()
