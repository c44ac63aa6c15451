"""Distribution shift statistics (pure: numpy only). Used by the daily drift check (learning.monitoring).

Population stability index (PSI) over bins fixed by the reference: ``sum((c - r) * ln(c / r))`` with a small
floor for empty bins; for numbers the bins are the reference's deciles, for categories the categories. The
two-sample Kolmogorov-Smirnov statistic (largest gap between the two empirical CDFs) is reported for numbers.
Rules of thumb: PSI < 0.1 stable, 0.1-0.25 moderate shift, > 0.25 major shift.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

_FLOOR = 1e-4


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    kind: str  # "numeric" or "categorical"
    reference_n: int
    current_n: int
    psi: float | None
    ks: float | None = None

    def as_dict(self) -> dict:
        return {
            "feature": self.feature,
            "kind": self.kind,
            "reference_n": self.reference_n,
            "current_n": self.current_n,
            "psi": None if self.psi is None else round(self.psi, 4),
            "ks": None if self.ks is None else round(self.ks, 4),
        }


def psi_from_counts(reference: Sequence[float], current: Sequence[float]) -> float:
    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(current, dtype=np.float64)
    ref = np.maximum(ref / max(ref.sum(), 1.0), _FLOOR)
    cur = np.maximum(cur / max(cur.sum(), 1.0), _FLOOR)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def decile_edges(reference: np.ndarray) -> np.ndarray:
    """Inner decile edges of the reference plus one just above its maximum, so that values beyond anything
    the reference saw get their own bin (a constant reference still separates larger values)."""
    deciles = np.quantile(reference, np.linspace(0.0, 1.0, 11)[1:-1])
    return np.unique(np.append(deciles, np.nextafter(reference.max(), np.inf)))


def numeric_psi(reference: Sequence[float], current: Sequence[float]) -> float | None:
    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(current, dtype=np.float64)
    if not len(ref) or not len(cur):
        return None
    edges = decile_edges(ref)
    return psi_from_counts(
        np.bincount(np.searchsorted(edges, ref, side="right"), minlength=len(edges) + 1),
        np.bincount(np.searchsorted(edges, cur, side="right"), minlength=len(edges) + 1),
    )


def ks_statistic(reference: Sequence[float], current: Sequence[float]) -> float | None:
    ref = np.sort(np.asarray(reference, dtype=np.float64))
    cur = np.sort(np.asarray(current, dtype=np.float64))
    if not len(ref) or not len(cur):
        return None
    points = np.concatenate([ref, cur])
    gap = np.searchsorted(ref, points, side="right") / len(ref) - np.searchsorted(
        cur, points, side="right"
    ) / len(cur)
    return float(np.max(np.abs(gap)))


def categorical_psi(reference: Sequence[str], current: Sequence[str]) -> float | None:
    if not len(reference) or not len(current):
        return None
    ref, cur = Counter(reference), Counter(current)
    categories = sorted(set(ref) | set(cur))
    return psi_from_counts([ref[c] for c in categories], [cur[c] for c in categories])


def histogram_psi(
    edges: Sequence[float], reference_counts: Sequence[float], current: Sequence[float]
) -> float | None:
    """PSI of ``current`` values against a reference stored as a histogram (e.g. validation scores)."""
    cur = np.asarray(current, dtype=np.float64)
    if not len(cur) or len(reference_counts) != len(edges) - 1:
        return None
    inner = np.asarray(edges[1:-1], dtype=np.float64)
    counts = np.bincount(np.searchsorted(inner, cur, side="right"), minlength=len(reference_counts))
    return psi_from_counts(reference_counts, counts)


def compare_numeric(feature: str, reference: Sequence[float], current: Sequence[float]) -> FeatureDrift:
    return FeatureDrift(
        feature,
        "numeric",
        len(reference),
        len(current),
        numeric_psi(reference, current),
        ks_statistic(reference, current),
    )


def compare_categorical(feature: str, reference: Sequence[str], current: Sequence[str]) -> FeatureDrift:
    return FeatureDrift(
        feature, "categorical", len(reference), len(current), categorical_psi(reference, current)
    )
