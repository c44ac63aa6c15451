"""Probability calibration and the seven-class differential's manifest entries (pure: NumPy, no Django, no ORT).

A package may carry ``calibration`` (a monotone map from the ensemble's raw probability to a calibrated one,
fitted on the validation split by ``training.calibrate``) and ``differential`` (which extra member output holds
the class probabilities, and which of its classes are malignant). Both are optional: a package without them
(1.2.x) is served exactly as before. Formats in ``docs/model-package.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

CALIBRATION_METHODS = ("temperature", "platt", "isotonic")
# Probabilities are clipped this far from 0 and 1 before taking logits.
_EPS = 1e-6


class CalibrationError(ValueError):
    """The manifest's calibration or differential entry is invalid; the message names the field."""


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1.0 - _EPS)
    return np.log(p) - np.log1p(-p)


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(z, dtype=np.float64)))


@dataclass(frozen=True)
class Calibration:
    """``temperature``: sigmoid(logit(p) / T); ``platt``: sigmoid(slope * logit(p) + intercept);
    ``isotonic``: linear interpolation through the knots (x, y), both non-decreasing in [0, 1]."""

    method: str
    slope: float = 1.0
    intercept: float = 0.0
    x: tuple[float, ...] = ()
    y: tuple[float, ...] = ()
    fitted: dict | None = None  # what it was fitted on (informational)

    def apply(self, p: Any) -> np.ndarray:
        p = np.asarray(p, dtype=np.float64)
        if self.method == "isotonic":
            out = np.interp(p, self.x, self.y)
        else:
            out = sigmoid(self.slope * logit(p) + self.intercept)
        return np.clip(out, 0.0, 1.0)

    def to_dict(self) -> dict:
        if self.method == "temperature":
            body: dict = {"temperature": 1.0 / self.slope}
        elif self.method == "platt":
            body = {"slope": self.slope, "intercept": self.intercept}
        else:
            body = {"x": list(self.x), "y": list(self.y)}
        out = {"method": self.method, "input": "ensemble probability", **body}
        if self.fitted:
            out["fitted"] = self.fitted
        return out


def _number(data: dict, key: str) -> float:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise CalibrationError(f"manifest: calibration.{key} must be a finite number")
    return float(value)


def parse_calibration(data: Any) -> Calibration | None:
    """The manifest's ``calibration`` object (None when absent). Raises :class:`CalibrationError`."""
    if data is None:
        return None
    if not isinstance(data, dict):
        raise CalibrationError('manifest: calibration must be an object such as {"method": "platt", ...}')
    method = data.get("method")
    if method not in CALIBRATION_METHODS:
        raise CalibrationError(
            f"manifest: calibration.method must be one of {', '.join(CALIBRATION_METHODS)}"
        )
    fitted = data.get("fitted") if isinstance(data.get("fitted"), dict) else None
    if method == "temperature":
        temperature = _number(data, "temperature")
        if temperature <= 0:
            raise CalibrationError("manifest: calibration.temperature must be positive")
        return Calibration("temperature", slope=1.0 / temperature, fitted=fitted)
    if method == "platt":
        slope = _number(data, "slope")
        if slope <= 0:
            raise CalibrationError(
                "manifest: calibration.slope must be positive (the map must keep the order)"
            )
        return Calibration("platt", slope=slope, intercept=_number(data, "intercept"), fitted=fitted)
    x, y = data.get("x"), data.get("y")
    if not isinstance(x, list) or not isinstance(y, list) or len(x) != len(y) or len(x) < 2:
        raise CalibrationError("manifest: isotonic calibration needs lists x and y of equal length >= 2")
    try:
        xs, ys = np.array(x, dtype=np.float64), np.array(y, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise CalibrationError("manifest: calibration.x and .y must be numbers") from exc
    if not (np.all(np.isfinite(xs)) and np.all(np.isfinite(ys))) or xs.min() < 0 or xs.max() > 1:
        raise CalibrationError("manifest: calibration.x must lie within [0, 1]")
    if ys.min() < 0 or ys.max() > 1 or np.any(np.diff(xs) <= 0) or np.any(np.diff(ys) < 0):
        raise CalibrationError(
            "manifest: calibration.x must increase strictly and calibration.y must not decrease, within [0, 1]"
        )
    return Calibration("isotonic", x=tuple(xs.tolist()), y=tuple(ys.tolist()), fitted=fitted)


@dataclass(frozen=True)
class Differential:
    """The class probabilities every member exposes as its extra output ``output`` (e.g. "classes")."""

    output: str
    classes: tuple[str, ...]
    malignant: tuple[str, ...]
    # one positive weight per class (``weights`` in the manifest, {class: weight}): the shares within the
    # malignant and within the benign mass are re-weighted by them (see calibrated_differential); None: as is
    weights: tuple[float, ...] | None = None

    def to_dict(self) -> dict:
        out = {"output": self.output, "classes": list(self.classes), "malignant": list(self.malignant)}
        if self.weights is not None:
            out["weights"] = dict(zip(self.classes, self.weights, strict=True))
        return out


def parse_differential(data: Any, member_outputs: dict[str, dict[str, str]]) -> Differential | None:
    """The manifest's ``differential`` object; every member must declare its ``output`` in ``outputs``."""
    if data is None:
        return None
    if not isinstance(data, dict):
        raise CalibrationError("manifest: differential must be an object")
    output, classes, malignant = data.get("output"), data.get("classes"), data.get("malignant", [])
    if not isinstance(output, str) or not output:
        raise CalibrationError('manifest: differential.output must name a member output, e.g. "classes"')
    if (
        not isinstance(classes, list)
        or len(classes) < 2
        or not all(isinstance(c, str) and c for c in classes)
        or len(set(classes)) != len(classes)
    ):
        raise CalibrationError("manifest: differential.classes must list at least two distinct class names")
    if not isinstance(malignant, list) or any(c not in classes for c in malignant):
        raise CalibrationError("manifest: differential.malignant must list some of differential.classes")
    for member, outputs in member_outputs.items():
        if output not in outputs:
            raise CalibrationError(
                f"member '{member}': the differential needs the output '{output}' in its 'outputs'"
            )
    weights = data.get("weights")
    if weights is not None:
        if (
            not isinstance(weights, dict)
            or set(weights) != set(classes)
            or not all(isinstance(w, int | float) and not isinstance(w, bool) for w in weights.values())
            or not all(np.isfinite(w) and w > 0 for w in weights.values())
        ):
            raise CalibrationError(
                "manifest: differential.weights must give every class of differential.classes a positive number"
            )
        weights = tuple(float(weights[c]) for c in classes)
    return Differential(output, tuple(classes), tuple(malignant), weights)


def calibrated_differential(
    classes: np.ndarray, malignant: np.ndarray, calibrated: np.ndarray, weights: np.ndarray | None = None
) -> np.ndarray:
    """Rescale class probabilities (N, C) so that the malignant classes sum to the calibrated risk and the
    benign ones to its complement, keeping the proportions within each side: the differential then agrees
    with the calibrated risk shown next to it (the members' softmax sums to the raw, uncalibrated risk).

    ``weights`` (C,): the proportions within each side are first multiplied by them (the balanced
    differential, :func:`balance_weights`); the two sides' totals, and so the risk, stay as they are."""
    classes = np.asarray(classes, dtype=np.float64)
    if weights is not None:
        classes = classes * np.asarray(weights, dtype=np.float64).reshape(1, -1)
    mask = np.asarray(malignant, dtype=bool)
    if not mask.any() or mask.all():
        return classes / np.clip(classes.sum(axis=1, keepdims=True), 1e-12, None)
    mal = classes[:, mask].sum(axis=1, keepdims=True)
    ben = classes[:, ~mask].sum(axis=1, keepdims=True)
    cal = np.asarray(calibrated, dtype=np.float64).reshape(-1, 1)
    out = np.empty_like(classes)
    n_mal, n_ben = int(mask.sum()), int((~mask).sum())
    out[:, mask] = np.where(mal > 1e-12, classes[:, mask] / np.clip(mal, 1e-12, None), 1.0 / n_mal) * cal
    out[:, ~mask] = np.where(ben > 1e-12, classes[:, ~mask] / np.clip(ben, 1e-12, None), 1.0 / n_ben) * (
        1.0 - cal
    )
    return out


def balance_weights(class_counts: np.ndarray, strength: float) -> np.ndarray:
    """Per-class weights ``(count / total) ** -strength`` (0: none; 1: every diagnosis as likely a priori),
    scaled to a geometric mean of 1. Multiplying the differential by them counters the training data's
    class frequencies (naevi outnumber dermatofibromas 60 to 1), so that a rare diagnosis the image supports
    can be named first; the ISIC 2018 Task 3 metric (balanced accuracy) rewards exactly that."""
    counts = np.asarray(class_counts, dtype=np.float64)
    if counts.ndim != 1 or np.any(counts <= 0):
        raise ValueError("class counts must all be positive")
    weights = (counts / counts.sum()) ** -float(strength)
    return weights / np.exp(np.log(weights).mean())
