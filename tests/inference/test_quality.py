"""The AI gate's quality checks on synthetic images just over and just under each threshold."""

import json

import numpy as np
import pytest
from PIL import Image

from inference.package import PackageError, gate_quality_thresholds, parse_manifest
from inference.quality import DEFAULT_THRESHOLDS, explain, quality_checks, quality_measures
from tests.inference.members import edit_manifest


def check(image: Image.Image, name: str, thresholds: dict | None = None):
    return next(c for c in quality_checks(image, thresholds or DEFAULT_THRESHOLDS) if c.name == name)


def grey(level: int, size=(200, 150)) -> Image.Image:
    return Image.new("RGB", size, (level, level, level))


def noise_image(amplitude: float, size=(200, 150), seed: int = 0, grain: int = 1) -> Image.Image:
    """Grey 128 plus Gaussian detail of standard deviation ``40 * amplitude``; ``grain`` > 1 makes the detail
    smooth (blobs of about ``grain`` pixels), so that a large amplitude still measures as little detail."""
    rng = np.random.default_rng(seed)
    small = rng.normal(0, 1, size=(max(2, size[1] // grain), max(2, size[0] // grain))).astype(np.float32)
    x = np.asarray(Image.fromarray(small, mode="F").resize(size, Image.Resampling.BICUBIC))
    x = (x / x.std())[:, :, None].repeat(3, axis=2)
    return Image.fromarray(np.clip(128 + amplitude * 40 * x, 0, 255).astype(np.uint8))


def test_blur_just_over_and_under_the_threshold():
    threshold = DEFAULT_THRESHOLDS["blur_min"]
    # The Laplacian is linear: the measure grows with the square of the detail's amplitude.
    # measure(a) = a^2 * unit + rounding, with 8-bit rounding adding about a constant: solve from two amplitudes.
    m1, m2 = (quality_measures(noise_image(a, grain=8))["blur"] for a in (1.0, 2.0))
    unit = (m2 - m1) / 3
    crossing = np.sqrt((threshold - (m1 - unit)) / unit)
    assert 0.3 < crossing < 3  # amplitudes large enough for 8-bit rounding not to matter
    sharp = check(noise_image(crossing * 1.15, grain=8), "blur")
    blurred = check(noise_image(crossing * 0.85, grain=8), "blur")
    assert sharp.passed and sharp.value >= threshold
    assert not blurred.passed and blurred.value < threshold
    assert blurred.reason == "blurred"
    assert (
        threshold * 0.6 < blurred.value < threshold < sharp.value < threshold * 1.6
    )  # just under, just over


def test_too_dark_just_over_and_under_the_threshold():
    threshold = DEFAULT_THRESHOLDS["brightness_min"]
    assert check(grey(int(threshold) + 1), "brightness").passed
    dark = check(grey(int(threshold) - 1), "brightness")
    assert not dark.passed and dark.reason == "too_dark"


def test_overexposed_just_over_and_under_the_threshold():
    threshold = DEFAULT_THRESHOLDS["clipped_max"]  # fraction of the centre burnt out to white

    def partly_white(fraction: float) -> Image.Image:
        pixels = np.full((500, 500, 3), 120, dtype=np.uint8)
        top, rows = 100, round(300 * fraction)  # the centre is rows/columns 100..400
        pixels[top : top + rows] = 255
        return Image.fromarray(pixels)

    under, over = (
        check(partly_white(threshold - 0.05), "clipped"),
        check(partly_white(threshold + 0.05), "clipped"),
    )
    assert under.passed and under.value < threshold
    assert not over.passed and over.value > threshold and over.reason == "overexposed"


def test_too_small_just_over_and_under_and_ham10000_passes():
    threshold = int(DEFAULT_THRESHOLDS["min_side"])
    assert check(noise_image(1, size=(threshold, threshold)), "min_side").passed
    small = check(noise_image(1, size=(threshold - 1, threshold + 40)), "min_side")
    assert not small.passed and small.reason == "too_small"
    # HAM10000 images are 200x150: every check passes on a sharp, well-exposed one.
    assert all(c.passed for c in quality_checks(noise_image(1.0, size=(200, 150)), DEFAULT_THRESHOLDS))


def test_extreme_aspect_ratio_just_over_and_under():
    threshold = DEFAULT_THRESHOLDS["aspect_max"]
    assert check(noise_image(1, size=(int(100 * threshold), 100)), "aspect").passed
    strip = check(noise_image(1, size=(int(100 * threshold) + 2, 100)), "aspect")
    assert not strip.passed and strip.reason == "extreme_aspect_ratio"


def test_blank_black_and_white_images_fail_with_plain_reasons():
    white, black = quality_checks(grey(255)), quality_checks(grey(0))
    assert {c.reason for c in white if not c.passed} == {"blurred", "overexposed"}
    assert {c.reason for c in black if not c.passed} == {"blurred", "too_dark"}
    sentence = explain(["too_dark"])
    assert "too dark" in sentence and "new" in sentence


def test_thresholds_come_from_the_manifest_and_bad_ones_are_refused(package):
    folder = edit_manifest(package, gate={"quality": {"brightness_min": 100}})
    manifest = parse_manifest(json.loads((folder / "manifest.json").read_text()))
    thresholds = gate_quality_thresholds(manifest)
    assert thresholds["brightness_min"] == 100
    assert not check(grey(90), "brightness", thresholds).passed
    data = json.loads((folder / "manifest.json").read_text())
    data["gate"] = {"quality": {"sharpness": 3}}
    with pytest.raises(PackageError, match="sharpness"):
        parse_manifest(data)
    data["gate"] = {"quality": {"blur_min": "high"}}
    with pytest.raises(PackageError, match="blur_min"):
        parse_manifest(data)
