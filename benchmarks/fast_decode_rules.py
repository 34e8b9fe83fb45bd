"""Which fast-decode rule: a JPEG DCT-scaled down to the resize target itself, or to twice it? Paired.

`--preprocess fast` decodes a JPEG much larger than the model's resize target at 1/2, 1/4 or 1/8 scale
(libjpeg's DCT scaling). How far down is the question: to no less than the resize target ("to the
target") or to no less than twice it ("twice the target"). Both are compared with the exact path on
- labels: Fashion-MNIST test images upscaled into JPEG frames, predicted by a trained model's INT8 bundle
  (pixels in, at its own input size); frames are scaled by the model's resize / 256, so that the model sees
  them at the ratio the shipped 224-px GoogLeNet (resize 256) sees 1080p and 12 MP frames. The two rules'
  agreements with exact are compared paired, image by image (`PairedDifference`: only the images where
  exactly one of the two rules agrees with exact count);
- pixels: real photos (scikit-learn's china.jpg and flower.jpg) at 1080p and 12 MP, through a 224-px
  GoogLeNet's transform (resize 256, crop 224): how far each rule's crop is from the exact crop.
Both rules run the rest of the fast path as users get it (only the crop's region resampled).

    .venv/bin/python benchmarks/fast_decode_rules.py --checkpoint BASE.pt [--per-class 300]
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from end_to_end import SIZES, _compile, _upscaled  # benchmarks/ is the script's directory
from PIL import Image

from edgekit.core.progress import Progress
from edgekit.data.fashion_mnist import write_image_folder
from edgekit.data.images import collect_images, read_image
from edgekit.data.preprocess import PreprocessSpec, preprocess, resize_and_crop
from edgekit.measure.environment import environment
from edgekit.measure.stats import PairedDifference, wilson
from edgekit.pipeline.compile_config import CompileConfig
from edgekit.runtime.model import BundleModel

RULES = {"to the target": 1, "twice the target": 2}  # rule → decode to no less than this × the resize target


def _labels(model: BundleModel, folder: Path, progress: Progress) -> dict[str, Any]:
    spec = model.preprocessing
    exact, fast = (PreprocessSpec(**{**spec.to_dict(), "decode": d}) for d in ("exact", "fast"))
    files = collect_images([folder])
    names = sorted(p.name for p in folder.iterdir())
    truth = np.array([names.index(f.parent.name) for f in files])
    predicted: dict[str, np.ndarray] = {}
    # "full decode": the fast path without DCT scaling, to tell what the crop-region resampling alone costs.
    paths = {"exact": None, "full decode": None, **{r: m * spec.resize for r, m in RULES.items()}}
    for rule, scale_to in paths.items():
        top1: list[int] = []
        for start in progress.bar(range(0, len(files), 32), desc=rule, total=math.ceil(len(files) / 32), unit="batch"):
            path = exact if rule == "exact" else fast  # fast: the crop's region resampled alone, as users get it
            batch = np.stack([preprocess(read_image(f, scale_to=scale_to), path) for f in files[start : start + 32]])
            top1 += model.probabilities(batch).argmax(1).tolist()
        predicted[rule] = np.array(top1)
    agrees = {r: predicted[r] == predicted["exact"] for r in ("full decode", *RULES)}
    first, second = RULES
    return {
        "images": len(files),
        "decoded_size": {r: list(read_image(files[0], scale_to=s).size) for r, s in
                         paths.items() if r != "full decode"},
        "agreement_with_exact": {
            r: {"rate": float(a.mean()), "ci95": list(wilson(int(a.sum()), len(files)))} for r, a in agrees.items()
        },
        # lost: only the first rule agrees with exact; gained: only the second; drop_pts: what the second loses.
        "paired": PairedDifference.of(agrees[first], agrees[second]).to_dict(),
        "top1_against_labels": {r: float(np.mean(p == truth)) for r, p in predicted.items()},
    }  # fmt: skip


def _pixels(folder: Path) -> dict[str, Any]:
    """Per photo size: each rule's 224 crop against the exact crop, in grey levels over all pixels."""
    from sklearn.datasets import load_sample_image

    spec, fast = PreprocessSpec(), PreprocessSpec(decode="fast")  # the shipped GoogLeNet's: resize 256, crop 224
    results: dict[str, Any] = {}
    for label, size in SIZES.items():
        diffs: dict[str, list[np.ndarray]] = {r: [] for r in RULES}
        for name in ("china.jpg", "flower.jpg"):
            path = folder / f"{label.replace(' ', '')}-{name}"
            Image.fromarray(load_sample_image(name)).resize(size, Image.Resampling.BICUBIC).save(path, quality=90)
            exact = np.asarray(resize_and_crop(read_image(path), spec), np.int16)
            for rule, margin in RULES.items():
                crop = resize_and_crop(read_image(path, scale_to=margin * spec.resize), fast)
                diffs[rule].append(np.abs(np.asarray(crop, np.int16) - exact).ravel())
        results[label] = {
            rule: {"mean_abs": float(np.concatenate(d).mean()), "p99_abs": float(np.percentile(np.concatenate(d), 99)),
                   "decoded_size": list(read_image(path, scale_to=RULES[rule] * spec.resize).size)}
            for rule, d in diffs.items()
        }  # fmt: skip
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True, help="a well-trained model (train_base.py's)")
    parser.add_argument("--trained-as", default=None, help="how it was trained, in words")
    parser.add_argument("--per-class", type=int, default=300, help="upscaled test images per class")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    started = time.perf_counter()
    progress = Progress()
    results: dict[str, Any] = {"environment": environment(threads=0), "rules": RULES}
    with tempfile.TemporaryDirectory() as work:
        tmp = Path(work)
        calib = write_image_folder(tmp / "calib", "train", 40, seed=7)
        test = write_image_folder(tmp / "test", "test", args.per_class, seed=3)
        bundle = tmp / "bundle"
        config = CompileConfig(model=args.checkpoint, target="x86-cpu", precision="int8", calib=calib, out=bundle,
                               preprocess="fast", normalise_in_model=True)  # fmt: skip
        results["bundle"] = _compile(config, progress)
        results["model"] = {"checkpoint": str(args.checkpoint), "trained_as": args.trained_as}
        model = BundleModel.open(bundle)
        resize = model.preprocessing.resize
        results["labels"] = {}
        for index, (label, (w, h)) in enumerate(SIZES.items()):
            size = (round(w * resize / 256), round(h * resize / 256))
            frames = _upscaled(test, tmp / f"frames-{index}", size)
            results["labels"][f"{label} as the 224-px model sees it ({size[0]}×{size[1]})"] = _labels(
                model, frames, progress
            )
        (tmp / "photos").mkdir()
        results["pixels"] = _pixels(tmp / "photos")
    results["minutes"] = (time.perf_counter() - started) / 60
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "fast_decode_rules.json").write_text(json.dumps(results, indent=2) + "\n")
    env, first, second = results["environment"], *RULES
    lines = [
        "# Fast decode: a JPEG DCT-scaled to the resize target, or to twice it (paired)",
        "",
        f"{env['date']}, {env['cpu']}, {env['logical_cores']} logical cores; one run, {results['minutes']:.0f} min. "
        f"Model: {args.trained_as or args.checkpoint}; INT8 bundle {results['bundle']['backend']}, pixels in, "
        f"input {results['bundle']['input']}, guard {results['bundle']['guard']}.",
        "",
        "Labels: Fashion-MNIST test images upscaled into JPEG frames (quality 90), top-1 agreement with the exact "
        "path (95 % Wilson interval); discordant: images where only one rule agrees with exact; change: the second "
        "rule's agreement minus the first's, in points, paired 95 % interval (edgekit's `PairedDifference`). "
        "Fast, full decode: the fast path without DCT scaling (only the crop's region resampled), "
        "what the rest of the fast path costs on its own.",
        "",
        f"| frames | images | decoded: exact / {first} / {second} | {first} | {second} "
        f"| only {first} / only {second} | change (95 %) | fast, full decode "
        f"| top-1 vs labels: exact / full decode / {first} / {second} |",
        "|---|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for label, row in results["labels"].items():
        rates, paired = row["agreement_with_exact"], row["paired"]
        sizes = " / ".join("×".join(map(str, s)) for s in row["decoded_size"].values())
        lines.append(
            f"| {label} | {row['images']} | {sizes} | "
            + " | ".join(f"{rates[r]['rate']:.2%} ({rates[r]['ci95'][0]:.2%}–{rates[r]['ci95'][1]:.2%})" for r in RULES)
            + f" | {paired['lost']} / {paired['gained']} | {-paired['drop_pts']:+.2f} "
            f"({-paired['ci95_pts'][1]:+.2f} to {-paired['ci95_pts'][0]:+.2f}) | {rates['full decode']['rate']:.2%} | "
            + " / ".join(f"{v:.1%}" for v in row["top1_against_labels"].values())
            + " |"
        )
    lines += [
        "",
        "Pixels: real photos (china.jpg, flower.jpg) through a 224-px GoogLeNet's transform (resize 256, crop 224); "
        "each rule's crop against the exact crop, grey levels over all pixels of both photos:",
        "",
        f"| photos | decoded: {first} / {second} | mean |diff| {first} | {second} | p99 |diff| {first} | {second} |",
        "|---|---|---:|---:|---:|---:|",
        *[f"| {label} | {' / '.join('×'.join(map(str, p[r]['decoded_size'])) for r in RULES)} | "
          f"{p[first]['mean_abs']:.2f} | {p[second]['mean_abs']:.2f} | {p[first]['p99_abs']:.0f} | "
          f"{p[second]['p99_abs']:.0f} |" for label, p in results["pixels"].items()],
        "",
        "Reproduce: `.venv/bin/python benchmarks/fast_decode_rules.py --checkpoint BASE.pt` (BASE.pt: "
        "`benchmarks/train_base.py`'s base model).",
    ]  # fmt: skip
    (args.out / "fast_decode_rules.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
