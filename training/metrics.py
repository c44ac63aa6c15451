"""Metrics on scores (pure NumPy, no TensorFlow, no runtime): AUC, exact confidence intervals, the threshold for a
target sensitivity, ECE and reliability, per-subgroup figures (source, sex, age band, site, diagnosis, metadata
missingness), the per-group sensitivity floor and the differential's balanced multiclass accuracy."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from training.data import Dataset


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve (Mann-Whitney, ties count half); None when only one class is present."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate, threshold), predicting positive when score >= threshold."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    thresholds = np.unique(scores)[::-1]
    n_pos, n_neg = max(1, labels.sum()), max(1, (~labels).sum())
    tpr = np.array([((scores >= t) & labels).sum() / n_pos for t in thresholds])
    fpr = np.array([((scores >= t) & ~labels).sum() / n_neg for t in thresholds])
    return np.r_[0.0, fpr], np.r_[0.0, tpr], np.r_[np.inf, thresholds]


def _log_binomial_pmf(n: int, p: float) -> np.ndarray:
    """log P(X = k) for k = 0..n, X ~ Binomial(n, p), 0 < p < 1."""
    log_factorial = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, n + 1, dtype=np.float64)))])
    k = np.arange(n + 1)
    return log_factorial[n] - log_factorial[k] - log_factorial[n - k] + k * np.log(p) + (n - k) * np.log1p(-p)


def binomial_upper_tail(n: int, k: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p)."""
    if k <= 0:
        return 1.0
    if k > n or p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    logs = _log_binomial_pmf(n, p)[k:]
    top = logs.max()
    return float(min(1.0, np.exp(top) * np.exp(logs - top).sum()))


def _solve_increasing(f, target: float) -> float:
    """The p in [0, 1] where the increasing function f reaches ``target`` (60 bisection steps)."""
    low, high = 0.0, 1.0
    for _ in range(60):
        middle = (low + high) / 2
        if f(middle) < target:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def proportion_lower_bound(successes: int, n: int, confidence: float = 0.95) -> float:
    """One-sided exact (Clopper-Pearson) lower confidence bound of a proportion: the smallest true rate under
    which ``successes`` or more of ``n`` would still happen with probability 1 - ``confidence``."""
    if n <= 0 or successes <= 0:
        return 0.0
    return _solve_increasing(lambda p: binomial_upper_tail(n, successes, p), 1.0 - confidence)


def proportion_interval(successes: int, n: int, confidence: float = 0.95) -> list[float] | None:
    """Two-sided exact (Clopper-Pearson) confidence interval of a proportion; None when ``n`` is 0."""
    if n <= 0:
        return None
    alpha = (1.0 - confidence) / 2.0
    lower = proportion_lower_bound(successes, n, 1.0 - alpha)
    # upper: the rate at which ``successes`` or fewer happen with probability alpha
    upper = (
        1.0
        if successes >= n
        else _solve_increasing(lambda p: binomial_upper_tail(n, successes + 1, p), 1.0 - alpha)
    )
    return [lower, upper]


def choose_threshold(
    labels: np.ndarray, scores: np.ndarray, target: float = 0.95, confidence: float = 0.0
) -> dict:
    """The highest threshold (predict malignant when score >= threshold) whose sensitivity on these cases
    reaches ``target``.

    With ``confidence`` = 0 that is the point estimate: exactly ``ceil(target * n)`` of the n positives are
    flagged, so on new cases from the same population the sensitivity falls short of the target about half the
    time. With ``confidence`` > 0 the threshold flags the fewest positives whose exact one-sided lower
    confidence bound of sensitivity still reaches ``target`` (``bound_met``); when even flagging every positive
    is not enough (too few positives), it flags every positive and ``bound_met`` is False.

    Returns {threshold, target, confidence, positives, flagged, sensitivity, lower_bound, bound_met}."""
    labels = np.asarray(labels).astype(bool)
    if not 0.0 < target <= 1.0:
        raise ValueError(f"target sensitivity must be in (0, 1], got {target}")
    if not 0.0 <= confidence < 1.0:
        raise ValueError(f"confidence must be in [0, 1), got {confidence}")
    positives = np.sort(np.asarray(scores, dtype=np.float64)[labels])[::-1]
    n = len(positives)
    if n == 0:
        raise ValueError("no positive cases: a threshold for a target sensitivity cannot be chosen")
    keep = max(1, int(np.ceil(target * n - 1e-9)))
    bound_met = True
    if confidence > 0.0:
        alpha = 1.0 - confidence
        if binomial_upper_tail(n, n, target) > alpha:
            keep, bound_met = n, False
        else:  # the smallest keep whose lower bound reaches the target (the tail falls as keep grows)
            low, high = keep, n
            while low < high:
                middle = (low + high) // 2
                if binomial_upper_tail(n, middle, target) <= alpha:
                    high = middle
                else:
                    low = middle + 1
            keep = low
    threshold = float(positives[keep - 1])
    flagged = int((positives >= threshold).sum())  # ties at the threshold are flagged too
    return {
        "threshold": threshold,
        "target": target,
        "confidence": confidence,
        "positives": n,
        "flagged": flagged,
        "sensitivity": flagged / n,
        "lower_bound": proportion_lower_bound(flagged, n, confidence) if confidence > 0 else None,
        "bound_met": bound_met,
    }


def threshold_for_sensitivity(
    labels: np.ndarray, scores: np.ndarray, target: float = 0.95, confidence: float = 0.0
) -> float:
    """The threshold of ``choose_threshold`` alone."""
    return choose_threshold(labels, scores, target, confidence)["threshold"]


def threshold_for_specificity(labels: np.ndarray, scores: np.ndarray, target: float = 0.9) -> float:
    labels = np.asarray(labels).astype(bool)
    negatives = np.sort(np.asarray(scores, dtype=np.float64)[~labels])
    if len(negatives) == 0:
        return 1.0
    index = min(len(negatives) - 1, int(np.ceil(target * len(negatives))) - 1)
    return float(np.nextafter(negatives[max(0, index)], 2.0))


def expected_calibration_error(labels: np.ndarray, scores: np.ndarray, bins: int = 10) -> float:
    labels = np.asarray(labels, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(scores, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        mask = index == b
        if mask.any():
            total += mask.mean() * abs(labels[mask].mean() - scores[mask].mean())
    return float(total)


def reliability(labels: np.ndarray, scores: np.ndarray, bins: int = 10) -> list[dict]:
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(scores, edges[1:-1]), 0, bins - 1)
    out = []
    for b in range(bins):
        mask = index == b
        out.append(
            {
                "bin": [float(edges[b]), float(edges[b + 1])],
                "n": int(mask.sum()),
                "mean_probability": float(np.mean(scores[mask])) if mask.any() else None,
                "observed_rate": float(np.mean(labels[mask])) if mask.any() else None,
            }
        )
    return out


def binary_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict:
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    predicted = scores >= threshold
    tp = int((predicted & labels).sum())
    tn = int((~predicted & ~labels).sum())
    fp = int((predicted & ~labels).sum())
    fn = int((~predicted & labels).sum())

    def ratio(a: int, b: int) -> float | None:
        return a / b if b else None

    precision, sensitivity = ratio(tp, tp + fp), ratio(tp, tp + fn)
    f1 = 2 * precision * sensitivity / (precision + sensitivity) if precision and sensitivity else 0.0
    return {
        "n": int(len(labels)),
        "positives": int(labels.sum()),
        "threshold": float(threshold),
        "auc": roc_auc(labels, scores),
        "accuracy": ratio(tp + tn, len(labels)),
        "precision": precision,
        "sensitivity": sensitivity,
        "specificity": ratio(tn, tn + fp),
        "sensitivity_ci95": proportion_interval(tp, tp + fn),
        "specificity_ci95": proportion_interval(tn, tn + fp),
        "f1": f1,
        "confusion_matrix": {
            "labels": ["benign", "malignant"],
            "rows_true_cols_predicted": [[tn, fp], [fn, tp]],
        },
        "ece": expected_calibration_error(labels, scores),
    }


def age_band(age: float | None) -> str:
    if age is None:
        return "unknown"
    for upper, name in ((30, "<30"), (50, "30-49"), (70, "50-69")):
        if age < upper:
            return name
    return "70+"


def metadata_pattern(record) -> str:
    """Which metadata a record has: "all present" (age, sex and site), "all missing", "age missing" (the
    rest partly known) or "partly missing" (age known, sex or site not)."""
    known = (record.age is not None, bool(record.sex), bool(record.site))
    if all(known):
        return "all present"
    if not any(known):
        return "all missing"
    return "age missing" if not known[0] else "partly missing"


def subgroup_aucs(dataset: Dataset, scores: np.ndarray, threshold: float | None = None) -> dict:
    """AUC (and n, positives) per source, sex, age band, anatomical site and diagnosis; with ``threshold`` also
    the sensitivity and specificity at it (None where the group has no malignant / no benign image), because a
    threshold that reaches its target over all images can still miss it within one source or diagnosis."""
    labels = np.array([r.malignant for r in dataset.records]).astype(bool)
    keys = {
        "source": lambda r: r.source,
        "sex": lambda r: r.sex or "unknown",
        "age_band": lambda r: age_band(r.age),
        "site": lambda r: r.site or "unknown",
        "diagnosis": lambda r: r.diagnosis or "unknown",
        "metadata": metadata_pattern,
    }
    out: dict[str, dict] = {}
    for name, key in keys.items():
        groups: dict[str, list[int]] = defaultdict(list)
        for i, record in enumerate(dataset.records):
            groups[key(record)].append(i)
        out[name] = {}
        for value, idx in sorted(groups.items()):
            row = {
                "n": len(idx),
                "positives": int(labels[idx].sum()),
                "auc": roc_auc(labels[idx], scores[idx]),
            }
            if threshold is not None:
                flagged, truth = scores[idx] >= threshold, labels[idx]
                row["sensitivity"] = float(flagged[truth].mean()) if truth.any() else None
                row["specificity"] = float((~flagged[~truth]).mean()) if (~truth).any() else None
            out[name][value] = row
    return out


MIN_GROUP_POSITIVES = 30
GROUP_SENSITIVITY_FLOOR = 0.90


def sensitivity_shortfalls(
    subgroups: dict, *, min_positives: int = MIN_GROUP_POSITIVES, floor: float = GROUP_SENSITIVITY_FLOOR
) -> list[dict]:
    """The age bands and sources with >= ``min_positives`` malignant images whose sensitivity at the threshold
    is below ``floor`` (``subgroups`` as :func:`subgroup_aucs` returns it, with a threshold)."""
    out = []
    for group in ("age_band", "source"):
        for value, row in subgroups.get(group, {}).items():
            if row["positives"] >= min_positives and (row.get("sensitivity") or 0.0) < floor:
                out.append(
                    {
                        "group": group,
                        "value": value,
                        "positives": row["positives"],
                        "sensitivity": row["sensitivity"],
                    }
                )
    return out


def threshold_for_group_floors(
    subgroups_of: dict[str, list[str]],
    labels: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    *,
    min_positives: int = MIN_GROUP_POSITIVES,
    floor: float = GROUP_SENSITIVITY_FLOOR,
) -> dict:
    """The highest threshold <= ``threshold`` at which every group with >= ``min_positives`` positives keeps
    sensitivity >= ``floor``. ``subgroups_of``: {"age_band": [band of each case], "source": [...]}.

    Lowering one shared threshold only flags more cases, so the overall sensitivity rule that chose
    ``threshold`` still holds. Returns {threshold, lowered_from, lowered_for: [{group, value, positives,
    threshold}]} (``lowered_for`` empty when no group needed it)."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    lowered_for, new = [], float(threshold)
    for group, values in subgroups_of.items():
        values = np.asarray(values)
        for value in sorted(set(values.tolist())):
            positives = np.sort(scores[(values == value) & labels])[::-1]
            if len(positives) < min_positives:
                continue
            keep = max(1, int(np.ceil(floor * len(positives) - 1e-9)))
            needed = float(positives[keep - 1])
            if needed < new:
                lowered_for.append(
                    {"group": group, "value": value, "positives": len(positives), "threshold": needed}
                )
            new = min(new, needed)
    return {"threshold": new, "lowered_from": float(threshold), "lowered_for": lowered_for}


def mean_class_recall(truth: np.ndarray, predicted: np.ndarray) -> float:
    """Balanced multiclass accuracy by its formula: the mean recall over the classes present in ``truth``
    (class indices, N) of the argmax of ``predicted`` (N, C); a tie for the top counts as wrong."""
    top = predicted.max(axis=1, keepdims=True)
    winner = np.where((predicted == top).sum(axis=1) == 1, predicted.argmax(axis=1), -1)
    return float(np.mean([(winner[truth == c] == c).mean() for c in np.unique(truth)]))


def balanced_accuracy(diagnoses: list[str], classes: np.ndarray, class_names: list[str]) -> dict:
    """Balanced multiclass accuracy (the ISIC 2018 Task 3 metric: mean recall over the classes present, argmax
    prediction, ties count as wrong) over the records whose diagnosis is one of ``class_names``. Computed with
    the ``isic-challenge-scoring`` package when it is installed, else by the same formula here."""
    keep = [i for i, d in enumerate(diagnoses) if d in class_names]
    if not keep:
        return {"balanced_accuracy": None, "n": 0, "implementation": None}
    truth = np.zeros((len(keep), len(class_names)))
    for row, i in enumerate(keep):
        truth[row, class_names.index(diagnoses[i])] = 1.0
    predicted = np.asarray(classes, dtype=np.float64)[keep]
    try:
        import pandas as pd
        from isic_challenge_scoring.metrics import balanced_multiclass_accuracy

        value = balanced_multiclass_accuracy(
            pd.DataFrame(truth, columns=class_names),
            pd.DataFrame(predicted, columns=class_names),
            pd.Series(np.ones(len(keep))),
        )
        implementation = "isic-challenge-scoring"
    except ImportError:
        value = mean_class_recall(truth.argmax(axis=1), predicted)
        implementation = "training.evaluate (same formula)"
    per_class = {
        c: float((predicted[truth[:, j] == 1].argmax(axis=1) == j).mean()) if truth[:, j].any() else None
        for j, c in enumerate(class_names)
    }
    return {
        "balanced_accuracy": float(value),
        "n": len(keep),
        "recall_per_class": per_class,
        "implementation": implementation,
    }


def full_report(
    dataset: Dataset,
    scores: np.ndarray,
    threshold: float,
    *,
    raw_scores: np.ndarray | None = None,
    classes: np.ndarray | None = None,
    class_names: list[str] | None = None,
) -> dict:
    """Metrics at ``threshold`` on (calibrated) ``scores``; ``raw_scores``: the same before calibration (for
    ``ece_before_calibration`` and the reliability table before); ``classes``: the differential (N, C)."""
    labels = np.array([r.malignant for r in dataset.records])
    report = binary_metrics(labels, scores, threshold)
    report["subgroups"] = subgroup_aucs(dataset, scores, threshold)
    report["reliability"] = reliability(labels, scores)
    raw = scores if raw_scores is None else np.asarray(raw_scores, dtype=np.float64)
    report["ece_before_calibration"] = expected_calibration_error(labels, raw)
    if raw_scores is not None:
        report["reliability_before_calibration"] = reliability(labels, raw)
    report["melanoma_sensitivity"] = report["subgroups"]["diagnosis"].get("mel", {}).get("sensitivity")
    report["age_band_sensitivity"] = {
        band: row["sensitivity"] for band, row in report["subgroups"]["age_band"].items() if row["positives"]
    }
    report["missingness"] = report["subgroups"]["metadata"]
    report["sensitivity_shortfalls"] = sensitivity_shortfalls(report["subgroups"])
    if classes is not None and class_names:
        multiclass = balanced_accuracy([r.diagnosis for r in dataset.records], classes, list(class_names))
        report["balanced_accuracy"] = multiclass["balanced_accuracy"]
        report["multiclass"] = multiclass
    else:
        report["balanced_accuracy"] = None
    return report
