"""The preprocessing choices a user can trade for speed, each measured on the shipped model when it is
compiled: `--preprocess fast` (JPEG DCT-scaled decoding) against the exact decode, and
`--normalise-in-model` (the model takes uint8 pixels) against the float input it was checked on."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.backends.base import Converter, ModelFiles
from edgekit.core.progress import Progress
from edgekit.data.batches import sample
from edgekit.data.images import collect_images, read_image
from edgekit.data.preprocess import PreprocessSpec, pixels_of, preprocess
from edgekit.measure.evaluate import run_batched
from edgekit.measure.stats import top1_agreement
from edgekit.runtime.model import Runner

FAST_CHECK_IMAGES = 200


def fast_decode_check(folder: Path | None, spec: PreprocessSpec, runner: Runner, progress: Progress) -> dict[str, Any]:
    """`--preprocess fast`: the shipped model's top-1 on the user's images, fast decode against exact."""
    files = sample(collect_images([folder]), FAST_CHECK_IMAGES) if folder is not None else []
    exact, fast, scaled = [], [], 0
    for file in files:
        try:
            full, small = read_image(file), read_image(file, scale_to=spec.scale_to)
        except ValueError:
            continue
        scaled += small.size != full.size
        exact.append(preprocess(full, dataclasses.replace(spec, decode="exact")))
        fast.append(preprocess(small, spec))
    if not exact:
        progress.note("note: --preprocess fast: no images to measure its agreement on (pass --val DIR)")
        return {"images": 0, "note": "not measured: no readable images given (--val or --calib)"}
    agreement = top1_agreement(runner.run(np.stack(exact)), runner.run(np.stack(fast)))
    agreed = agreement.agreed
    record = {
        "decode": "fast",
        "images": len(exact),
        "jpeg_dct_scaled": scaled,
        "top1_agreement_with_exact": agreed / len(exact),
        "top1_agreement_ci95": list(agreement.interval()),
        "from": str(folder),
    }
    progress.note(
        f"--preprocess fast: top-1 agrees with the exact decode on {agreed}/{len(exact)} images "
        f"({scaled} JPEG(s) large enough to be DCT-scaled)"
    )
    return record


def fold_normalisation(
    converter: type[Converter],
    stage: Path,
    model_file: str,
    spec: PreprocessSpec,
    checked: tuple[np.ndarray, np.ndarray],
    batch: int | None,
    threads: int,
    progress: Progress,
) -> tuple[PreprocessSpec, dict[str, Any]]:
    """`--normalise-in-model`: fold `spec`'s normalisation into the model file in `stage`, then run the folded
    model on the pixels of the images it was checked on; (the shipped spec, the agreement record).

    `checked` is (float inputs, the unfolded model's outputs on them); the inputs were normalised from
    uint8 pixels, which `pixels_of` recovers exactly, so both models see the same images."""
    inputs, unfolded = checked
    converter.fold_normalisation(stage, model_file, spec)
    backend = converter.backend
    files = ModelFiles.from_directory(stage, model_file, backend)
    runner = Runner(backend, files, threads, batch, options=backend.trusted_run_options())
    folded = run_batched(runner.run, pixels_of(inputs, spec), 8, progress, "folded model")
    agreement = top1_agreement(unfolded, folded)
    agreed = agreement.agreed
    record = {
        "images": len(inputs),
        "input": "uint8 NHWC pixels, normalised inside the model",
        "top1_agreement_with_float_input": agreed / len(inputs),
        "top1_agreement_ci95": list(agreement.interval()),
        "max_abs_diff": float(np.max(np.abs(folded - unfolded))) if len(inputs) else 0.0,
    }
    progress.note(
        f"--normalise-in-model: top-1 agrees with the float input on {agreed}/{len(inputs)} images "
        f"(max abs diff {record['max_abs_diff']:.2e})"
    )
    return dataclasses.replace(spec, normalise_in_model=True), record
