"""From a camera-sized JPEG to a label: end-to-end latency and throughput against the network alone.

Two x86-cpu INT8 bundles of a GoogLeNet at 224×224 (trained here briefly on Fashion-MNIST: latency does not
depend on the weights), one taking float input, one with `--normalise-in-model` (uint8 pixels in), are fed:
- real photos (scikit-learn's sample images, china.jpg and flower.jpg) resized to 1920×1080 and to
  4000×3000 (12 MP), saved as JPEG quality 90: `edgekit bench --images` stage by stage, exact and fast decode;
- a folder of 1080p JPEGs through `iter_predict` (decoding overlapped with the network), batch 1 and 8.
Agreement: Fashion-MNIST test images upscaled into JPEG frames, predicted by a well-trained model's INT8
bundle (--checkpoint, at its own input size; else the timing model) on the exact path, the fast path and the
fast rule it replaced. A model smaller than 224 px also gets frames scaled to its resize target as 1080p and
12 MP frames are to the 224-px model's, since what a DCT-scaled decode changes depends on that ratio.

    .venv/bin/python benchmarks/end_to_end.py [--checkpoint base.pt --trained-as "..."] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from edgekit.core.progress import Progress
from edgekit.data.datasets import FASHION_MNIST
from edgekit.data.fashion_mnist import write_image_folder
from edgekit.data.images import collect_images, read_image
from edgekit.data.preprocess import PreprocessSpec, preprocess
from edgekit.measure.environment import environment
from edgekit.measure.latency import TimingProtocol, time_in_turns
from edgekit.measure.stats import top1_agreement
from edgekit.model.finetune import FinetuneConfig, run_finetune
from edgekit.optimize.ladder import GuardFailure
from edgekit.pipeline.bench import BenchConfig, run_bench
from edgekit.pipeline.compile_config import CompileConfig
from edgekit.pipeline.precision_auto import compile_model
from edgekit.runtime.model import BundleModel

SIZES = {"1080p": (1920, 1080), "12 MP": (4000, 3000)}


def _photos(folder: Path, size: tuple[int, int], copies: int) -> Path:
    from sklearn.datasets import load_sample_image

    folder.mkdir(parents=True)
    for name in ("china.jpg", "flower.jpg"):
        photo = Image.fromarray(load_sample_image(name)).resize(size, Image.Resampling.BICUBIC)
        for copy in range(copies):  # distinct files, so the page cache is what a folder of photos gives
            photo.save(folder / f"{Path(name).stem}-{copy}.jpg", quality=90)
    return folder


def _upscaled(source: Path, folder: Path, size: tuple[int, int]) -> Path:
    for file in collect_images([source]):
        target = folder / file.parent.name / f"{file.stem}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        # The garment upscaled to fill the height in the middle of a black 16:9 or 4:3 frame (its own
        # background): stretched, the centre crop would cut it and the model would be scored off its domain.
        width, height = size
        frame = Image.new("RGB", (width, height))
        frame.paste(
            Image.open(file).convert("RGB").resize((height, height), Image.Resampling.BICUBIC),
            ((width - height) // 2, 0),
        )
        frame.save(target, quality=90)
    return folder


def _agreement(model: BundleModel, folder: Path) -> dict[str, Any]:
    """Top-1 of the exact path, of the fast path (JPEGs decoded to no less than twice the resize target) and
    of the rule it replaced (decoded down to the resize target itself), each fast rule against exact."""
    spec = model.preprocessing
    exact_spec, fast_spec = (PreprocessSpec(**{**spec.to_dict(), "decode": d}) for d in ("exact", "fast"))
    rules = {
        "exact": (exact_spec, None),
        "fast": (fast_spec, fast_spec.scale_to),
        "to the target": (fast_spec, spec.resize),
    }
    files = collect_images([folder])
    labels = {name: i for i, name in enumerate(sorted(p.name for p in folder.iterdir()))}
    truth = np.array([labels[f.parent.name] for f in files])
    top1: dict[str, np.ndarray] = {}
    for rule, (path_spec, scale_to) in rules.items():
        predicted: list[int] = []
        for start in range(0, len(files), 16):
            chunk = files[start : start + 16]
            batch = np.stack([preprocess(read_image(f, scale_to=scale_to), path_spec) for f in chunk])
            predicted += model.probabilities(batch).argmax(1).tolist()
        top1[rule] = np.array(predicted)
    result: dict[str, Any] = {"images": len(files), "decoded_size": {
        rule: list(read_image(files[0], scale_to=scale_to).size) for rule, (_, scale_to) in rules.items()
    }}  # fmt: skip
    for rule in ("fast", "to the target"):
        agreement = top1_agreement(top1["exact"], top1[rule])
        result[rule] = {"top1_agreement_with_exact": agreement.rate, "ci95": list(agreement.interval())}
    result["top1_against_labels"] = {rule: float(np.mean(predicted == truth)) for rule, predicted in top1.items()}
    return result


def _throughput(model: BundleModel, folder: Path, batch: int, images: int) -> float:
    """Images/s through `iter_predict` from files: the one timing loop, each call the whole stream (median of 3)."""
    files = collect_images([folder])
    stream = [files[i % len(files)] for i in range(images)]

    def run_stream() -> int:
        return sum(1 for _ in model.iter_predict(stream, batch_size=batch))

    return time_in_turns([run_stream], TimingProtocol(warmup=1, iterations=3), [len(stream)])[0].images_per_s


def _compile(config: CompileConfig, progress: Progress) -> dict[str, Any]:
    guard = "passed"
    try:
        manifest = compile_model(config, progress)
    except GuardFailure as failure:  # a 1-epoch model: timing is the point here, so say so and go on
        guard = f"failed ({str(failure)[:200]}…); timed with --min-agreement 0"
        manifest = compile_model(dataclasses.replace(config, min_agreement=0.0), progress)
    return {
        "backend": manifest.backend,
        "keep_fp32": manifest.section("quantization")["keep_fp32"],
        "guard": guard,
        "input": manifest.input.shape,
        "normalisation_check": manifest.section("normalisation_check"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--checkpoint", type=Path, default=None, help="a well-trained model, for the agreement")
    parser.add_argument("--trained-as", default=None, help="with --checkpoint: how it was trained, in words")
    parser.add_argument("--agreement-per-class", type=int, default=100, help="upscaled test images per class")
    args = parser.parse_args()
    started = time.perf_counter()
    progress = Progress()
    results: dict[str, Any] = {"environment": environment(threads=0)}
    with tempfile.TemporaryDirectory() as work:
        tmp = Path(work)
        checkpoint = tmp / "googlenet224.pt"
        trained = run_finetune(
            FinetuneConfig(data=FASHION_MNIST, out=checkpoint, weights="none", per_class=100, val_per_class=20,
                           epochs=1, lr=0.05, resize=256, crop=224, seed=0), progress,
        )  # fmt: skip
        results["model"] = {"input": 224, "train_images": 1000, "epochs": 1, "val_top1": trained["best_val_top1"]}
        calib = write_image_folder(tmp / "calib", "train", 40, seed=7)
        test = write_image_folder(tmp / "test", "test", args.agreement_per_class, seed=1)
        results["bundles"], results["photos"], results["throughput"] = {}, {}, {}
        for variant, pixels_in in (("float input", False), ("pixels in", True)):
            bundle = tmp / f"int8-fast-{pixels_in}"  # one model file for both decode paths: bench times both
            config = CompileConfig(model=checkpoint, target="x86-cpu", precision="int8", calib=calib, out=bundle,
                                   preprocess="fast", normalise_in_model=pixels_in)  # fmt: skip
            results["bundles"][variant] = _compile(config, progress)
            model = BundleModel.open(bundle)
            for label, size in SIZES.items():
                folder = tmp / label.replace(" ", "")
                if not folder.exists():
                    _photos(folder, size, copies=15)
                config = BenchConfig(bundle, images=folder, batch_sizes=(1, 8), iterations=50,
                                     throughput=label == "1080p", out=tmp / f"bench-{label}-{pixels_in}")  # fmt: skip
                bench = run_bench(config, progress)
                results["photos"].setdefault(label, {})[variant] = {
                    "end_to_end": bench["end_to_end"], "latency": bench["latency"]["bundle"]
                }  # fmt: skip
            network = {row["batch"]: row["images_per_s"] for row in results["photos"]["1080p"][variant]["latency"]}
            results["throughput"][variant] = [
                {"batch": b, "images_per_s": _throughput(model, tmp / "1080p", b, 160),
                 "network_images_per_s": network[b]}
                for b in (1, 8)
            ]  # fmt: skip
        if args.checkpoint is not None:
            agreement_bundle = tmp / "agreement"
            config = CompileConfig(model=args.checkpoint, target="x86-cpu", precision="int8", calib=calib,
                                   out=agreement_bundle, preprocess="fast", normalise_in_model=True,
                                   val=test)  # fmt: skip
            results["agreement_bundle"] = _compile(config, progress)
            results["model"] = {"checkpoint": str(args.checkpoint), "trained_as": args.trained_as}
            model = BundleModel.open(agreement_bundle)
        # How far a DCT-scaled decode strays depends on the JPEG's size over the resize target: a model
        # resizing to R sees frames scaled by R/256 as the shipped 224-px GoogLeNet (resize 256) sees 1080p/12 MP.
        resize = model.preprocessing.resize
        frames = {f"{label} ({w}×{h})": (w, h) for label, (w, h) in SIZES.items()}
        if resize != 256:
            frames = {"1080p (1920×1080)": SIZES["1080p"]} | {
                f"{label} as the 224-px model sees it ({round(w * resize / 256)}×{round(h * resize / 256)})":
                    (round(w * resize / 256), round(h * resize / 256))
                for label, (w, h) in SIZES.items()
            }  # fmt: skip
        results["agreement"] = {}
        for index, (label, size) in enumerate(frames.items()):
            labelled = _upscaled(test, tmp / f"labelled-{index}", size)
            results["agreement"][label] = _agreement(model, labelled)
        results["minutes"] = (time.perf_counter() - started) / 60
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "end_to_end.json").write_text(json.dumps(results, indent=2) + "\n")
    env = results["environment"]
    bundles = "; ".join(
        f"{variant}: {b['backend']} INT8, input {b['input']}, guard {b['guard']}, FP32 groups "
        f"{', '.join(b['keep_fp32']) or 'none'}"
        for variant, b in results["bundles"].items()
    )
    lines = [
        "# From a JPEG to a label: end to end against the network alone (x86-cpu INT8, GoogLeNet 224², batch 1)",
        "",
        f"{env['date']}, {env['cpu']}, {env['logical_cores']} logical cores; one run, {results['minutes']:.0f} min. "
        f"Bundles: {bundles}. Medians in ms over 30 photos per size; each row's network column is that row's own "
        "timing of the bundle.",
        "",
        "| photos | model input | decode path | read | decode | resize/crop | normalise | network | post "
        "| end to end p50 | p90 | × network |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, variants in results["photos"].items():
        for variant, photo in variants.items():
            for path in ("exact", "fast"):
                row = photo["end_to_end"][path]
                lines.append(
                    f"| {label} | {variant} | {path} | {row['read_ms']:.2f} | {row['decode_ms']:.2f} | "
                    f"{row['resize_crop_ms']:.2f} | {row['normalise_ms']:.2f} | {row['network_ms']:.2f} | "
                    f"{row['postprocess_ms']:.3f} | {row['end_to_end_p50_ms']:.2f} | {row['end_to_end_p90_ms']:.2f} | "
                    f"{row['end_to_end_vs_network']:.2f}× |"
                )
    agreement = results["agreement"]
    model = results["model"]
    if "checkpoint" in model:
        check = results["agreement_bundle"]
        who = (
            f"{model['trained_as'] or model['checkpoint']}, INT8 bundle ({check['backend']}, pixels in, input "
            f"{check['input']}; folded vs float input: top-1 "
            f"{check['normalisation_check']['top1_agreement_with_float_input']:.2%} on "
            f"{check['normalisation_check']['images']} images)"
        )
    else:
        who = f"the timing model (trained 1 epoch on 1,000 images: val top-1 {model['val_top1']:.1%})"
    lines += [
        "",
        "| folder of 1080p JPEGs, fast decode | model input | images/s through iter_predict | network alone | ratio |",
        "|---|---|---:|---:|---:|",
        *[f"| batch {t['batch']} | {variant} | {t['images_per_s']:.1f} | {t['network_images_per_s']:.1f} | "
          f"{t['images_per_s'] / t['network_images_per_s']:.2f}× |"
          for variant, rows in results["throughput"].items() for t in rows],
        "",
        f"Fast vs exact decode on Fashion-MNIST test images upscaled into JPEG frames (the garment fills the "
        f"height, centred, quality 90), model {who}. Fast: decoded to no less than twice the resize target (the "
        "default); to the target: decoded down to the resize target itself (the rule before). Top-1 agreement "
        "with the exact path, 95 % Wilson interval:",
        "",
        "| frames | images | decoded size: exact / fast / to the target | fast | to the target "
        "| top-1 vs labels: exact / fast / to the target |",
        "|---|---:|---|---:|---:|---|",
        *[f"| {label} | {a['images']} | {' / '.join('×'.join(map(str, wh)) for wh in a['decoded_size'].values())} | "
          + " | ".join(f"{a[r]['top1_agreement_with_exact']:.2%} ({a[r]['ci95'][0]:.2%}–{a[r]['ci95'][1]:.2%})"
                       for r in ("fast", "to the target"))
          + f" | {' / '.join(f'{v:.1%}' for v in a['top1_against_labels'].values())} |"
          for label, a in agreement.items()],
        "",
        "Reproduce: `.venv/bin/python benchmarks/end_to_end.py --checkpoint BASE.pt` (BASE.pt: "
        "`benchmarks/train_base.py`'s base model).",
    ]  # fmt: skip
    (args.out / "end_to_end.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
