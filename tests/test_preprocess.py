"""Preprocessing must equal torchvision's eval transform, and any image mode must become RGB."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from torchvision import transforms

from edgekit.core.errors import EdgekitError
from edgekit.data.images import collect_images, read_image, read_labelled_folder, to_rgb
from edgekit.data.preprocess import PreprocessSpec, normalise, preprocess
from tests.photos import torchvision_eval


@pytest.mark.parametrize("size", [(640, 480), (480, 640), (333, 517), (256, 256), (225, 300), (1000, 257)])
def test_matches_torchvision_eval_transform(size: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(size))
    # A smooth gradient plus noise: resampling errors would show on both.
    y, x = np.mgrid[0 : size[1], 0 : size[0]]
    base = np.stack([(x * 255 // size[0]), (y * 255 // size[1]), ((x + y) % 256)], axis=-1)
    pixels = np.clip(base + rng.integers(-20, 20, base.shape), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels, "RGB")
    spec = PreprocessSpec()
    ours = preprocess(image, spec)
    assert ours.shape == (3, 224, 224) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, torchvision_eval(image, spec), atol=1e-6)


def test_matches_torchvision_with_other_sizes_and_interpolation() -> None:
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 410, 3), dtype=np.uint8))
    spec = PreprocessSpec(resize=110, crop=96, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    np.testing.assert_allclose(preprocess(image, spec), torchvision_eval(image, spec), atol=1e-6)
    bicubic = PreprocessSpec(interpolation="bicubic")
    expected = transforms.Compose(
        [
            transforms.Resize(256, interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize(bicubic.mean, bicubic.std),
        ]
    )(image).numpy()
    np.testing.assert_allclose(preprocess(image, bicubic), expected, atol=1e-6)


def test_normalise_gives_the_arithmetic_value_of_every_byte_in_every_channel() -> None:
    spec = PreprocessSpec(mean=(0.5, 0.25, 0.1), std=(0.2, 0.3, 0.7))
    pixels = np.stack(
        [np.arange(256, dtype=np.uint8), 255 - np.arange(256, dtype=np.uint8), np.arange(256, dtype=np.uint8)], -1
    )
    pixels = pixels.reshape(16, 16, 3)
    mean, std = np.asarray(spec.mean, np.float32), np.asarray(spec.std, np.float32)
    expected = ((pixels.astype(np.float32) / 255.0 - mean) / std).transpose(2, 0, 1)
    assert np.array_equal(normalise(Image.fromarray(pixels), spec), expected)


def test_spec_round_trips_and_rejects_nonsense() -> None:
    spec = PreprocessSpec(resize=128, crop=112)
    assert PreprocessSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(EdgekitError):
        PreprocessSpec(resize=100, crop=224)
    with pytest.raises(EdgekitError):
        PreprocessSpec.from_dict({"resize": 256, "colour": "red"})


@pytest.mark.parametrize(
    ("mode", "fmt"), [("L", "PNG"), ("LA", "PNG"), ("RGBA", "PNG"), ("P", "PNG"), ("CMYK", "JPEG"), ("1", "PNG")]
)
def test_any_mode_becomes_rgb_like_torchvision_loader(mode: str, fmt: str, tmp_path: Path) -> None:
    """edgekit's reader against torchvision's own ImageFolder loader on the same file (not against the PIL
    call edgekit makes), and against values computed from the source pixels where the mode allows."""
    from torchvision.datasets.folder import pil_loader

    pixels = np.random.default_rng(1).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    path = tmp_path / f"image.{fmt.lower()}"
    Image.fromarray(pixels).convert(mode).save(path, format=fmt)
    rgb = read_image(path)
    assert rgb.mode == "RGB" and rgb.size == (50, 40)
    np.testing.assert_array_equal(np.asarray(rgb), np.asarray(pil_loader(str(path))))
    got = np.asarray(rgb).astype(int)
    if mode in ("L", "LA"):  # grey in all three channels, ITU-R 601-2 luma of the source (PIL rounds)
        luma = pixels @ np.array([299, 587, 114]) / 1000
        assert (got[..., 0] == got[..., 1]).all() and (got[..., 1] == got[..., 2]).all()
        assert np.abs(got[..., 0] - luma).max() <= 1
    if mode == "RGBA":  # alpha dropped, colours kept exactly
        np.testing.assert_array_equal(got, pixels)
    if mode == "1":  # black or white only
        assert set(np.unique(got)) <= {0, 255}


def test_16_bit_greyscale_is_scaled_not_clipped() -> None:
    ramp = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1024).astype(np.uint16)
    image = Image.fromarray(ramp)
    assert image.mode == "I;16"
    rgb = np.asarray(to_rgb(image))
    assert rgb.shape == (8, 8, 3)
    np.testing.assert_array_equal(rgb[..., 0], np.round(ramp / 65535 * 255).astype(np.uint8))
    assert rgb.max() > 200 and rgb.min() == 0  # PIL's plain convert would clip nearly all to 255


def test_broken_files_raise_value_error_with_reason(tmp_path: Path) -> None:
    good = tmp_path / "good.png"
    Image.new("RGB", (10, 10), "red").save(good)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:30])
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    assert read_image(good).mode == "RGB"
    for broken in (truncated, text):
        with pytest.raises(ValueError):
            read_image(broken)


def test_collect_and_labelled_folder(tmp_path: Path) -> None:
    for name in ("cat", "dog"):
        (tmp_path / name).mkdir()
        Image.new("L", (8, 8)).save(tmp_path / name / "a.png")
    (tmp_path / "dog" / "README.txt").write_text("ignored")
    folder = read_labelled_folder(tmp_path)
    assert folder.class_names == ("cat", "dog")
    assert [label for _, label in folder.samples] == [0, 1]
    assert len(collect_images([tmp_path])) == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(EdgekitError, match="no labelled images"):
        read_labelled_folder(empty)
