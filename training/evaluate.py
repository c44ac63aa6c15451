"""Evaluation: metrics (AUC, accuracy, precision, sensitivity, specificity, F1, confusion matrix, ECE), AUC per
source and subgroup, the decision threshold for a target sensitivity, ROC / reliability PNGs and the model card.

Scoring a CSV with a package goes through ``inference.runtime.Ensemble``, the path the workers use; metrics are
plain NumPy so they need no TensorFlow.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from training.data import Dataset, load_dataset


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
        top = predicted.max(axis=1, keepdims=True)
        winner = np.where((predicted == top).sum(axis=1) == 1, predicted.argmax(axis=1), -1)
        recalls = [
            float((winner[truth[:, c] == 1] == c).mean())
            for c in range(len(class_names))
            if truth[:, c].any()
        ]
        value, implementation = float(np.mean(recalls)), "training.evaluate (same formula)"
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


def save_plots(
    labels: np.ndarray,
    scores: np.ndarray,
    folder: Path,
    *,
    threshold: float | None = None,
    title: str = "",
    raw_scores: np.ndarray | None = None,
) -> list[str]:
    """roc.png and reliability.png (matplotlib, Agg backend); with ``raw_scores`` the reliability diagram
    shows the probabilities before calibration too."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    fpr, tpr, thresholds = roc_curve(labels, scores)
    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=100)
    ax.plot(fpr, tpr, label=f"AUC {roc_auc(labels, scores):.3f}")
    ax.plot([0, 1], [0, 1], ":", color="grey")
    if threshold is not None:
        m = binary_metrics(labels, scores, threshold)
        ax.plot(
            [1 - m["specificity"]], [m["sensitivity"]], "o", color="red", label=f"threshold {threshold:.3f}"
        )
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("sensitivity")
    ax.set_title(f"ROC {title}".strip())
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(folder / "roc.png")
    plt.close(fig)
    bins = reliability(labels, scores)
    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=100)
    xs = [b["mean_probability"] for b in bins if b["n"]]
    ys = [b["observed_rate"] for b in bins if b["n"]]
    ax.plot([0, 1], [0, 1], ":", color="grey")
    if raw_scores is not None and not np.array_equal(raw_scores, scores):
        before = reliability(labels, np.asarray(raw_scores, dtype=np.float64))
        ax.plot(
            [b["mean_probability"] for b in before if b["n"]],
            [b["observed_rate"] for b in before if b["n"]],
            "s--",
            color="grey",
            label=f"before calibration, ECE {expected_calibration_error(labels, raw_scores):.3f}",
        )
    after = "calibrated, " if raw_scores is not None and not np.array_equal(raw_scores, scores) else ""
    ax.plot(xs, ys, "o-", label=f"{after}ECE {expected_calibration_error(labels, scores):.3f}")
    ax.set_xlabel("mean predicted probability")
    ax.set_ylabel("observed malignant rate")
    ax.set_title(f"Reliability {title}".strip())
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(folder / "reliability.png")
    plt.close(fig)
    return ["roc.png", "reliability.png"]


# ---------------------------------------------------------------- scoring through the inference runtime


def load_package(model: str | Path):
    """(folder, manifest) for a package folder/zip, or for ``active`` (the registry's active version)."""
    from inference.package import extract_zip, read_manifest

    if str(model) == "active":
        import os

        import django
        import django.apps

        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "teleder.settings")
        if not django.apps.apps.ready:  # set up once; a second setup would reconfigure logging
            django.setup()
        from inference.registry import active_model_version

        version = active_model_version()
        if version is None:
            raise FileNotFoundError("no model version is active; register and activate one first")
        model = version.package_path
    path = Path(model)
    if path.is_file() and path.suffix == ".zip":
        import tempfile

        path = extract_zip(path, Path(tempfile.mkdtemp(prefix="teleder-eval-")))
    if not (path / "manifest.json").is_file():
        raise FileNotFoundError(f"{path} is not a model package (no manifest.json)")
    manifest, _ = read_manifest(path)
    return path, manifest


def score_records(
    dataset: Dataset,
    folder: Path,
    manifest,
    *,
    batch_size: int = 32,
    progress: bool = True,
    mask_metadata: bool = False,
) -> dict[str, np.ndarray]:
    """Everything the ensemble says about every record, via ``inference.runtime``: ``probability`` (calibrated
    when the package is), ``raw_probability``, ``member_<name>`` and, when the package declares a differential,
    ``classes`` (N, C; calibrated like the risk). ``mask_metadata``: score as if age, sex and site were unknown
    (how much the metadata moves the scores)."""
    from inference.runtime import CPU, Ensemble, RuntimeConfig

    ensemble = Ensemble(folder, manifest, RuntimeConfig(providers=(CPU,)))
    out: dict[str, list] = defaultdict(list)
    starts = range(0, len(dataset.records), batch_size)
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, desc="scoring", unit="batch", mininterval=5)
    differential = manifest.differential
    for start in starts:
        chunk = dataset.records[start : start + batch_size]
        metadata = [
            (None, None, None) if mask_metadata else (r.age, r.sex or None, r.site or None) for r in chunk
        ]
        outcomes, _ = ensemble.run(ensemble.prepare([r.path for r in chunk], metadata))
        for outcome in outcomes:
            out["probability"].append(outcome.probability)
            out["raw_probability"].append(
                outcome.probability if outcome.raw_probability is None else outcome.raw_probability
            )
            for name, value in outcome.member_probabilities.items():
                out[f"member_{name}"].append(value)
            if differential is not None and outcome.class_probabilities:
                out["classes"].append([outcome.class_probabilities[c] for c in differential.classes])
    return {k: np.array(v) for k, v in out.items()}


def score_dataset(
    dataset: Dataset, folder: Path, manifest, *, batch_size: int = 32, progress: bool = True
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Ensemble and per-member probabilities for every record, via ``inference.runtime``."""
    scored = score_records(dataset, folder, manifest, batch_size=batch_size, progress=progress)
    members = {k[len("member_") :]: v for k, v in scored.items() if k.startswith("member_")}
    return scored["probability"], members


def evaluate_csv(
    data,
    model: str | Path,
    *,
    threshold: float | None = None,
    split: str | Path | None = None,
    subset: str = "val",
    out: Path | None = None,
    strict: bool = False,
    mask_metadata: bool = False,
) -> dict:
    """Score one or more CSVs (optionally one side of a saved split) with a package; metrics at the package
    threshold on the served (calibrated) probabilities. ``mask_metadata``: score with age, sex and site unknown."""
    from training.data import Split

    folder, manifest = load_package(model)
    dataset = load_dataset(data, strict=strict)
    if split:
        train, val = Split.load(split).apply(dataset)
        dataset = val if subset == "val" else train
    scored = score_records(dataset, folder, manifest, mask_metadata=mask_metadata)
    scores = scored["probability"]
    used = manifest.threshold if threshold is None else threshold
    differential = manifest.differential
    report = full_report(
        dataset,
        scores,
        used,
        raw_scores=scored["raw_probability"],
        classes=scored.get("classes"),
        class_names=list(differential.classes) if differential else None,
    )
    labels = np.array([r.malignant for r in dataset.records])
    report["members"] = {
        name[len("member_") :]: {"auc": roc_auc(labels, s)}
        for name, s in scored.items()
        if name.startswith("member_")
    }
    report["model"] = f"{manifest.name} {manifest.version}"
    report["data"] = data if isinstance(data, list) else str(data)
    report["bad_rows"] = len(dataset.bad_rows)
    report["calibrated"] = manifest.calibration is not None
    report["metadata_masked"] = mask_metadata
    if out:
        out.mkdir(parents=True, exist_ok=True)
        save_plots(
            labels, scores, out, threshold=used, title=report["model"], raw_scores=scored["raw_probability"]
        )
        (out / "metrics.json").write_text(json.dumps(report, indent=2))
        np.savez(
            out / "scores.npz",
            image_id=np.array([r.image_id for r in dataset.records]),
            label=labels,
            **scored,
        )
    return report


def _fmt(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.1e}" if 0 < abs(value) < 1e-3 else f"{value:.3f}"
    return str(value)


def threshold_sentence(rule: dict | None, threshold: float, target: float) -> str:
    """How the decision threshold was chosen, in one sentence for the model card."""
    if not rule or not rule.get("confidence"):
        return f"Decision threshold {threshold:.4f}, chosen on this validation split for sensitivity >= {target:.2f}."
    flagged = f"it flags {rule['flagged']} of the {rule['positives']} malignant validation images"
    if rule["bound_met"]:
        return (
            f"Decision threshold {threshold:.4f}, chosen on this validation split so that sensitivity >= "
            f"{target:.2f} holds with {rule['confidence']:.0%} confidence: {flagged} "
            f"({rule['sensitivity']:.3f}; exact one-sided lower bound {rule['lower_bound']:.3f}). A threshold "
            f"that flags exactly {target:.0%} of them would fall short of {target:.0%} on new patients about "
            "half the time."
        )
    return (
        f"Decision threshold {threshold:.4f}: {flagged}, and still the lower {rule['confidence']:.0%} "
        f"confidence bound of sensitivity is only {rule['lower_bound']:.3f}, below the target "
        f"{target:.2f}: validate on more malignant cases before relying on it."
    )


def _calibration_lines(card: dict) -> list[str]:
    record, m = card.get("calibration"), card["validation"]
    if not record:
        return ["Probabilities are not calibrated (the package has no calibration map).", ""]
    lines = [
        "## Calibration",
        "",
        f"The served probability is the ensemble's probability passed through a **{record['chosen']}** map "
        "fitted on this validation split (`calibration` in the manifest, applied by the workers): "
        f"ECE {_fmt(record['ece_before'])} before, {_fmt(m['ece'])} after (in sample; cross-validated "
        f"{_fmt(record['by_method'][record['chosen']]['ece_cv'])}). The map was chosen by "
        f"{record['cross_validation']} cross-validation on this split:",
        "",
        "| map | ECE (cross-validated) | log loss (cross-validated) |",
        "|---|---|---|",
    ]
    for method, row in record["by_method"].items():
        lines.append(f"| {method} | {_fmt(row['ece_cv'])} | {_fmt(row['log_loss_cv'])} |")
    before = m.get("reliability_before_calibration") or []
    lines += [
        "",
        "Reliability (10 bins of the predicted probability): mean predicted / observed malignant rate (n).",
        "",
        "| bin | before calibration | after calibration |",
        "|---|---|---|",
    ]
    for b_before, b_after in zip(before, m.get("reliability") or [], strict=False):

        def cell(b: dict) -> str:
            if not b["n"]:
                return "-"
            return f"{b['mean_probability']:.3f} / {b['observed_rate']:.3f} ({b['n']})"

        lines.append(
            f"| {b_after['bin'][0]:.1f}-{b_after['bin'][1]:.1f} | {cell(b_before)} | {cell(b_after)} |"
        )
    lines += [
        "",
        "The map is fitted to this validation mix (about 41 % malignant). At a clinic's lower prevalence the "
        "calibrated probability overstates the risk; the threshold and the review order are unaffected (the "
        "map is monotone).",
        "",
    ]
    return lines


def _shortfall_lines(card: dict) -> list[str]:
    shortfalls = card.get("sensitivity_shortfalls")
    if shortfalls is None:
        return []
    if not shortfalls:
        return [
            f"**Subgroup check passed:** every age band and source with >= {MIN_GROUP_POSITIVES} malignant "
            f"validation images keeps sensitivity >= {GROUP_SENSITIVITY_FLOOR:.2f} at the threshold.",
            "",
        ]
    lines = [
        f"**WARNING: subgroup check failed and was overridden.** Sensitivity below "
        f"{GROUP_SENSITIVITY_FLOOR:.2f} at the threshold in:",
        "",
    ]
    lines += [
        f"- {s['group']} {s['value']}: {s['sensitivity']:.3f} ({s['positives']} malignant)"
        for s in shortfalls
    ]
    return lines + [""]


def _differential_lines(card: dict) -> list[str]:
    m = card["validation"]
    multiclass = m.get("multiclass")
    if not card.get("differential") or not multiclass:
        return []
    lines = [
        "## Seven-class differential",
        "",
        "Every member's softmax over the seven HAM10000 diagnoses is exposed as its `classes` output, averaged "
        "with the member weights and rescaled so that akiec + bcc + mel equals the calibrated risk. Balanced "
        f"multiclass accuracy (ISIC 2018 Task 3 metric, computed with {multiclass['implementation']}) on the "
        f"{multiclass['n']} validation images: **{_fmt(multiclass['balanced_accuracy'])}**.",
        "",
        "| diagnosis | recall (top-1) |",
        "|---|---|",
    ]
    lines += [f"| {c} | {_fmt(r)} |" for c, r in multiclass["recall_per_class"].items()]
    return lines + [""]


def _extra_lines(card: dict) -> list[str]:
    """Free-form sections the packager adds (``card["extra_sections"]``: [{title, markdown}])."""
    lines = []
    for section in card.get("extra_sections") or []:
        lines += [f"## {section['title']}", "", section["markdown"].rstrip(), ""]
    return lines


def _source_lines(card: dict) -> list[str]:
    sources = card.get("data_sources")
    if not sources:
        return []
    lines = ["## Data sources and licences", ""]
    for source in sources:
        lines += [
            f"From `{source['csv']}` (its SOURCES.md):",
            "",
            source.get("licences") or "(no SOURCES.md)",
            "",
        ]
    return lines


def model_card_markdown(card: dict) -> str:
    """The Markdown model card from the card dictionary (also written as JSON)."""
    m = card["validation"]
    lines = [
        f"# Model card: {card['name']} {card['version']}",
        "",
        card.get("summary", ""),
        "",
        "## Intended use",
        "",
        card.get("intended_use", ""),
        "",
        "## Members",
        "",
        "| member | backbone | input | training | validation AUC | ONNX parity (max abs diff) |",
        "|---|---|---|---|---|---|",
    ]
    for member in card["members"]:
        lines.append(
            f"| {member['name']} | {member['backbone']} | {member['image_size']} px | "
            f"{member.get('recipe') or '-'} | "
            f"{_fmt(member.get('val_auc'))} | {_fmt(member.get('parity_max_abs_diff'))} |"
        )
    lines += [
        "",
        f"## Validation ({m['n']} images, {m['positives']} malignant; lesion-grouped split)",
        "",
        threshold_sentence(card.get("threshold_rule"), m["threshold"], card["target_sensitivity"]),
        "",
        "| metric | value |",
        "|---|---|",
    ]
    for key in (
        "auc",
        "sensitivity",
        "specificity",
        "precision",
        "accuracy",
        "f1",
        "ece",
        "ece_before_calibration",
        "melanoma_sensitivity",
        "balanced_accuracy",
    ):
        if key not in m:
            continue
        interval = m.get(f"{key}_ci95")
        suffix = f" (95% CI {interval[0]:.3f}-{interval[1]:.3f})" if interval else ""
        lines.append(f"| {key} | {_fmt(m[key])}{suffix} |")
    cm = m["confusion_matrix"]["rows_true_cols_predicted"]
    lines += [
        "",
        "Confusion matrix (rows: truth, columns: prediction): "
        f"benign {cm[0][0]} / {cm[0][1]}, malignant {cm[1][0]} / {cm[1][1]}.",
        "",
        "![ROC](roc.png) ![Reliability](reliability.png)",
        "",
    ]
    lines += _calibration_lines(card)
    lines += _shortfall_lines(card)
    lines += [
        "## Per source and subgroup (sensitivity and specificity at the decision threshold)",
        "",
        "`metadata`: which of age, sex and site the image came with (all present / age missing / partly "
        "missing / all missing).",
        "",
    ]
    for group, values in m["subgroups"].items():
        lines += [
            f"### {group}",
            "",
            "| value | n | malignant | AUC | sensitivity | specificity |",
            "|---|---|---|---|---|---|",
        ]
        for value, row in values.items():
            lines.append(
                f"| {value} | {row['n']} | {row['positives']} | {_fmt(row['auc'])} | "
                f"{_fmt(row.get('sensitivity'))} | {_fmt(row.get('specificity'))} |"
            )
        lines.append("")
    lines += []
    lines += _differential_lines(card)
    lines += _extra_lines(card)
    lines += _source_lines(card)
    lines += [
        "## Training",
        "",
        "```json",
        json.dumps(card.get("training", {}), indent=2),
        "```",
        "",
        "## Limitations",
        "",
    ]
    lines += [f"- {item}" for item in card.get("limitations", [])]
    return "\n".join(lines) + "\n"
