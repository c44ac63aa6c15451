"""Image quality checks of the AI safety gate (pure: Pillow + NumPy, no Django, no ONNX Runtime).

Cheap, deterministic checks that run before the model, in workers, training (``training gate``) and evaluation
(``training evaluate-gate``) alike. Each check measures one number on the image and compares it with a
threshold from the model package's manifest (``gate.quality``), falling back to :data:`DEFAULT_THRESHOLDS`.

Measures are taken at a fixed working resolution (the lesion-sized centre of the image, resampled to
``WORK_SIZE`` x ``WORK_SIZE``), so a sharp 200x150 HAM10000 image and a sharp 4000x3000 phone image score
alike: blur is judged at the scale of the lesion, not in camera pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

# The reasons an image is not assessed (machine-readable; the API's enum). Quality reasons come from the
# checks below; ``not_dermoscopy`` from the out-of-distribution score (``inference.ood``).
REASONS: dict[str, str] = {
    "blurred": "The image is out of focus or blurred: the lesion's detail cannot be seen.",
    "too_dark": "The image is too dark: most of the lesion is in shadow.",
    "overexposed": "The image is overexposed: most of the lesion is burnt out to white.",
    "too_small": "The image is too small for the model to assess.",
    "extreme_aspect_ratio": "The image is a very long strip (extreme aspect ratio), not a lesion photograph.",
    "not_dermoscopy": "The image does not look like dermoscopy of a skin lesion.",
}
RESUBMIT_HINT = "Please take a new, sharp, well-lit dermoscopic image of the lesion and add it to the case."

WORK_SIZE = 128
CENTRE_FRACTION = 0.6  # the central 60 % of each side: where a dermoscopic lesion sits
BRIGHT_LEVEL = 245  # luma at or above this is clipped ("burnt out")

# name -> (threshold, direction): "min" fails below the threshold, "max" fails above it.
# Set by measurement on the validation split (docs/inference.md, "AI safety gate").
DEFAULT_THRESHOLDS: dict[str, float] = {
    "blur_min": 4.5,  # variance of the Laplacian; real dermoscopy p1 >= 5.8, 2 %-blurred <= 4.0
    "brightness_min": 60.0,  # 90th percentile of the centre's luma; real p1 >= 69, x0.2 brightness <= 51
    "clipped_max": 0.45,  # clipped fraction of the centre; real max 0.35
    "min_side": 96,  # pixels on the short side; HAM10000's 200x150 (the smallest real images) pass
    "aspect_max": 3.0,  # long side / short side; real dermoscopy <= 1.55
}


@dataclass(frozen=True)
class QualityCheck:
    """One check: its name, the reason it gives when it fails, the measured value and the threshold."""

    name: str
    reason: str
    value: float
    threshold: float
    passed: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": round(float(self.value), 4),
            "threshold": float(self.threshold),
            "passed": bool(self.passed),
        }


def thresholds_from(data: dict | None) -> dict[str, float]:
    """The defaults, overridden by a manifest's ``gate.quality`` object. Unknown keys or non-numbers raise
    ``ValueError`` naming the key."""
    out = dict(DEFAULT_THRESHOLDS)
    for key, value in (data or {}).items():
        if key not in DEFAULT_THRESHOLDS:
            raise ValueError(f"unknown quality threshold {key!r} (known: {', '.join(DEFAULT_THRESHOLDS)})")
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not np.isfinite(value)
            or value < 0
        ):
            raise ValueError(f"quality threshold {key!r} must be a non-negative number")
        out[key] = float(value)
    return out


def working_luma(image: Image.Image) -> np.ndarray:
    """The lesion-sized centre of ``image`` as float32 luma (0..255), resampled to WORK_SIZE x WORK_SIZE."""
    width, height = image.size
    margin_x = round(width * (1 - CENTRE_FRACTION) / 2)
    margin_y = round(height * (1 - CENTRE_FRACTION) / 2)
    box = (margin_x, margin_y, max(margin_x + 1, width - margin_x), max(margin_y + 1, height - margin_y))
    centre = image.convert("L").resize((WORK_SIZE, WORK_SIZE), Image.Resampling.BILINEAR, box=box)
    return np.asarray(centre, dtype=np.float32)


def laplacian_variance(luma: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian (a standard focus measure): low means blurred or flat."""
    lap = luma[:-2, 1:-1] + luma[2:, 1:-1] + luma[1:-1, :-2] + luma[1:-1, 2:] - 4.0 * luma[1:-1, 1:-1]
    return float(lap.var())


def quality_measures(image: Image.Image) -> dict[str, float]:
    """The raw measures of one decoded RGB image (what the checks compare with their thresholds)."""
    width, height = image.size
    luma = working_luma(image)
    return {
        "blur": laplacian_variance(luma),
        "brightness": float(np.percentile(luma, 90)),
        "clipped": float(np.mean(luma >= BRIGHT_LEVEL)),
        "min_side": float(min(width, height)),
        "aspect": float(max(width, height) / max(1, min(width, height))),
    }


def quality_checks(image: Image.Image, thresholds: dict[str, float] | None = None) -> list[QualityCheck]:
    """Every quality check on one decoded RGB image, in a fixed order."""
    t = thresholds or DEFAULT_THRESHOLDS
    m = quality_measures(image)
    return [
        QualityCheck("blur", "blurred", m["blur"], t["blur_min"], m["blur"] >= t["blur_min"]),
        QualityCheck(
            "brightness",
            "too_dark",
            m["brightness"],
            t["brightness_min"],
            m["brightness"] >= t["brightness_min"],
        ),
        QualityCheck(
            "clipped", "overexposed", m["clipped"], t["clipped_max"], m["clipped"] <= t["clipped_max"]
        ),
        QualityCheck("min_side", "too_small", m["min_side"], t["min_side"], m["min_side"] >= t["min_side"]),
        QualityCheck(
            "aspect", "extreme_aspect_ratio", m["aspect"], t["aspect_max"], m["aspect"] <= t["aspect_max"]
        ),
    ]


def failed_reasons(checks: list[QualityCheck]) -> list[str]:
    return [check.reason for check in checks if not check.passed]


def explain(reasons: list[str]) -> str:
    """One plain sentence (or a few) for people, from machine-readable reasons."""
    if not reasons:
        return "The image was assessed by the AI."
    parts = [REASONS.get(reason, reason) for reason in reasons]
    return " ".join(parts) + " " + RESUBMIT_HINT
