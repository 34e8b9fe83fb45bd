"""`edgekit export deepstream`: a bundle as a DeepStream `nvinfer` classifier (primary or secondary GIE), with
the preprocessing difference measured rather than assumed away.

nvinfer knows one scale factor and per-channel offsets; torchvision normalises with a per-channel std. So the
exported ONNX file takes float pixel values 0..255 and normalises them itself (`float_pixels_onnx`: from a
bundle compiled with --normalise-in-model, or any float-input one), and the config says net-scale-factor=1,
offsets=0: the network sees exactly the values PyTorch's would. What cannot be matched is the geometry:
nvinfer scales the whole frame (or object) to the network size, where torchvision resizes the shorter side
and crops the centre. Both of nvinfer's ways (stretch, or maintain-aspect-ratio with symmetric padding) are
emulated on the user's images — bilinear, without antialiasing, as `scaling-filter=1` on the GPU — and the
one that agrees more often with edgekit's own pipeline is written, with both agreements and their intervals
recorded in deepstream.json.

Keys are checked against what each DeepStream release's nvinfer parser accepts (nvinfer_keys.json; nvinfer
itself only warns about an unknown key and ignores it).
"""

from __future__ import annotations

import dataclasses
import json
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.backends.base import Backend, ModelFiles
from edgekit.backends.normalise_fold import float_pixels_onnx
from edgekit.backends.registry import get_backend, reference_backend
from edgekit.core.errors import EdgekitError
from edgekit.core.progress import QUIET, Progress
from edgekit.data.images import collect_images, read_image
from edgekit.data.preprocess import float_input, preprocess
from edgekit.measure.stats import top1_agreement
from edgekit.runtime.bundle import read_manifest, read_verified
from edgekit.runtime.manifest import Manifest
from edgekit.runtime.model import BundleModel
from edgekit.serve.output import staged_export

DEEPSTREAM_VERSIONS = ("6.0", "6.1", "6.2", "6.3", "6.4", "7.0", "7.1")
NETWORK_MODES = {"fp32": 0, "int8": 1, "fp16": 2}  # nvinfer's network-mode values
MAX_IMAGES = 500  # enough to tell a 1-point agreement difference (Wilson interval ±0.9 points at 99 %)
MODEL_FILE = "model.onnx"
LABELS = "labels.txt"


@dataclasses.dataclass(frozen=True)
class DeepStreamSettings:
    version: str = "7.1"
    gie: str = "primary"  # "primary": whole frames; "secondary": objects a detector found
    gie_unique_id: int = 1
    operate_on_gie_id: int = 1  # a secondary GIE classifies this GIE's objects
    batch_size: int = 1
    threshold: float = 0.0  # classifier-threshold: below it nvinfer attaches no label


def keys_for(version: str) -> frozenset[str]:
    table = json.loads(resources.files("edgekit.serve").joinpath("nvinfer_keys.json").read_text())
    return frozenset(table["property"][version])


def _check(manifest: Manifest, settings: DeepStreamSettings) -> None:
    if settings.version not in DEEPSTREAM_VERSIONS:
        raise EdgekitError(f"--deepstream {settings.version} is not one of {', '.join(DEEPSTREAM_VERSIONS)}")
    if not manifest.model_file.endswith(".onnx"):
        raise EdgekitError(
            f"this bundle's model is {manifest.model_file}, not ONNX; nvinfer builds TensorRT engines from ONNX: "
            "compile an FP32 bundle (nvinfer builds FP16 itself) or one for a Jetson target"
        )
    portable = get_backend(manifest.backend).capabilities.portable_onnx
    if manifest.precision == "int8" and not portable:
        raise EdgekitError(
            f"this INT8 bundle's ONNX file is {manifest.backend}'s own quantized layout, which TensorRT does not "
            "build; export an FP32 bundle, or compile INT8 for a Jetson target (TensorRT's Q/DQ placement)"
        )
    if manifest.input.batch not in (None, settings.batch_size):
        raise EdgekitError(f"the model takes exactly {manifest.input.batch} images per run: pass --batch-size that")


def _config(manifest: Manifest, settings: DeepStreamSettings, keep_aspect: bool, output: str) -> dict[str, str]:
    precision = manifest.precision if manifest.precision in NETWORK_MODES else "fp32"
    engine = f"{MODEL_FILE}_b{settings.batch_size}_gpu0_{precision}.engine"  # the name nvinfer saves it under
    config = {
        "gpu-id": "0",
        "net-scale-factor": "1.0",  # the model normalises (per-channel mean and std) itself
        "offsets": "0;0;0",
        "model-color-format": "0",  # RGB, as torchvision's loaders give
        "onnx-file": MODEL_FILE,
        "model-engine-file": engine,  # built from the ONNX file on first run, then reused
        "labelfile-path": LABELS,
        "infer-dims": f"{manifest.input.channels};{manifest.input.height};{manifest.input.width}",
        "network-input-order": "0",  # NCHW
        "batch-size": str(settings.batch_size),
        "network-mode": str(NETWORK_MODES.get(manifest.precision, 0)),
        "network-type": "1",  # classifier
        "process-mode": "1" if settings.gie == "primary" else "2",
        "gie-unique-id": str(settings.gie_unique_id),
        "output-blob-names": output,
        "classifier-threshold": f"{settings.threshold:g}",
        "maintain-aspect-ratio": "1" if keep_aspect else "0",
        "symmetric-padding": "1" if keep_aspect else "0",
        "scaling-filter": "1",  # bilinear, as emulated when the agreement was measured
    }
    if settings.gie == "secondary":
        config["operate-on-gie-id"] = str(settings.operate_on_gie_id)
    unknown = sorted(set(config) - keys_for(settings.version))
    if unknown:  # a key this table does not list for the version would be ignored by nvinfer
        raise EdgekitError(f"DeepStream {settings.version}'s nvinfer does not read {', '.join(unknown)}")
    return config


def _scaled(image: Any, size: int, keep_aspect: bool) -> np.ndarray:
    """nvinfer's scaling of a frame (or object) to the network: bilinear without antialiasing (the GPU's
    NvBufSurfTransform with scaling-filter=1), whole frame stretched, or scaled to fit and centred on black."""
    import torch
    import torch.nn.functional as functional

    pixels = torch.from_numpy(np.asarray(image, dtype=np.float32).transpose(2, 0, 1).copy())[None]
    height, width = pixels.shape[2:]
    if not keep_aspect:
        return functional.interpolate(pixels, size=(size, size), mode="bilinear", align_corners=False)[0].numpy()
    ratio = min(size / width, size / height)
    new_h, new_w = max(1, round(height * ratio)), max(1, round(width * ratio))
    resized = functional.interpolate(pixels, size=(new_h, new_w), mode="bilinear", align_corners=False)[0]
    canvas = torch.zeros((3, size, size))
    top, left = (size - new_h) // 2, (size - new_w) // 2
    canvas[:, top : top + new_h, left : left + new_w] = resized
    return canvas.numpy()


def _sample(images: Path) -> list[Path]:
    """Up to MAX_IMAGES of the folder's images, a fixed-seed sample; an empty folder is refused before any work."""
    files = collect_images([images])
    if not files:
        raise EdgekitError(f"--images {images} holds no image files")
    return [files[i] for i in np.random.default_rng(0).permutation(len(files))[:MAX_IMAGES]]


def _agreements(reference: BundleModel, exported: Backend, files: list[Path], progress: Progress) -> dict[str, Any]:
    """Top-1 agreement of nvinfer's two scalings (emulated, through the exported file) with edgekit's pipeline."""
    size = reference.manifest.input.height
    exact: list[int] = []
    modes: dict[str, list[int]] = {"stretch": [], "keep_aspect": []}
    for path in progress.bar(files, "nvinfer emulation", unit="image"):
        try:
            image = read_image(path)
        except ValueError:  # unreadable files are not images nvinfer would see either
            continue
        exact.append(reference.probabilities(preprocess(image, reference.preprocessing)[None])[0].argmax())
        for mode, keep in (("stretch", False), ("keep_aspect", True)):
            modes[mode].append(exported.run(_scaled(image, size, keep)[None]).argmax())
    if not exact:
        raise EdgekitError("no image in --images could be read")
    result = {}
    for mode, predicted in modes.items():
        agreement = top1_agreement(np.array(exact), np.array(predicted))
        low, high = agreement.interval()
        result[mode] = {"agreement": agreement.rate, "ci95": [low, high], "n": agreement.n}
    return result


def _check_pixels_model(reference: BundleModel, exported: Backend) -> float:
    """The exported file on float pixels equals the bundle on its own input, on random crops: the largest
    difference of their outputs (refused beyond float noise)."""
    spec = reference.preprocessing
    pixels = np.random.default_rng(0).integers(0, 256, (2, spec.crop, spec.crop, 3), dtype=np.uint8)
    own = pixels if spec.normalise_in_model else float_input(pixels, spec)
    expected = reference.runner.run(own.astype(spec.input_dtype))
    got = exported.run(pixels.transpose(0, 3, 1, 2).astype(np.float32))
    difference = float(np.abs(expected - got).max())
    if difference > 1e-3 * max(1.0, float(np.abs(expected).max())):
        raise EdgekitError(f"the pixel-input model differs from the bundle's by {difference:.3g}: not exported")
    return difference


def export_deepstream(
    bundle: Path,
    out: Path,
    settings: DeepStreamSettings,
    images: Path | None,
    force: bool = False,
    progress: Progress = QUIET,
) -> dict[str, Any]:
    """Write `out`: config_infer_<gie>.txt, model.onnx (pixels in), labels.txt and deepstream.json."""
    manifest = read_manifest(bundle, verify=True, trust=True)
    _check(manifest, settings)
    files = _sample(images) if images is not None else None
    # The manifest just read and verified. A TensorRT bundle's Q/DQ file runs on the reference runtime here, as
    # its parity was checked at compile time: its engine is nvinfer's to build on the device.
    portable = get_backend(manifest.backend).capabilities.portable_onnx
    reference = BundleModel(bundle, manifest, reference_backend().name if portable else None, None)
    output = manifest.section("output").get("name") or "output"
    record: dict[str, Any] = {"kind": "deepstream", "bundle": str(bundle.resolve()), "deepstream": settings.version}
    with staged_export(out, force, record) as folder:
        model = folder / MODEL_FILE
        model.write_bytes(read_verified(bundle, manifest, manifest.model_file))
        float_pixels_onnx(model, manifest.preprocessing)
        backend = reference_backend()
        exported = backend(ModelFiles.from_file(model, backend), 0)
        record["max_output_difference"] = _check_pixels_model(reference, exported)
        keep_aspect = False
        if files is not None:
            measured = _agreements(reference, exported, files, progress)
            record["agreement_with_edgekit"] = measured
            keep_aspect = measured["keep_aspect"]["agreement"] > measured["stretch"]["agreement"]
        else:
            record["agreement_with_edgekit"] = None  # not measured: say so rather than assume
        config = _config(manifest, settings, keep_aspect, output)
        name = f"config_infer_{settings.gie}.txt"
        lines = [
            f"# edgekit export deepstream: nvinfer {settings.gie} classifier for DeepStream {settings.version}",
            f"# from {bundle.resolve()}; how its preprocessing compares with edgekit's: deepstream.json",
            "[property]",
            *(f"{key}={value}" for key, value in config.items()),
        ]
        (folder / name).write_text("\n".join(lines) + "\n")
        (folder / LABELS).write_text(";".join(manifest.classes) + "\n")  # a classifier's labels: one line, ';'
        record.update({"config": name, "keys": config, "scaling": "keep_aspect" if keep_aspect else "stretch"})
        (folder / "deepstream.json").write_text(json.dumps(record, indent=2) + "\n")
    return record
