"""Fitting the package's calibration map on the validation split (pure NumPy; the map itself lives in
``inference.calibration`` so the workers apply exactly what was fitted).

Three maps of the ensemble's probability p: ``temperature`` (sigmoid(logit(p) / T)), ``platt``
(sigmoid(a logit(p) + b)) and ``isotonic`` (pool-adjacent-violators, linearly interpolated). Which one ships is
decided by lesion-grouped cross-validation on the validation split itself: each map is fitted on k-1 folds and
its ECE and log loss measured on the held-out fold. A map fitted and measured on the same images would always
favour the most flexible one (isotonic).
"""

from __future__ import annotations

import numpy as np

from inference.calibration import CALIBRATION_METHODS, Calibration, logit, sigmoid


def _newton_logistic(x: np.ndarray, y: np.ndarray, *, intercept: bool, iterations: int = 100) -> np.ndarray:
    """Maximum-likelihood logistic regression of y on x (one feature, with or without an intercept)."""
    design = np.stack([x, np.ones_like(x)], axis=1) if intercept else x[:, None]
    beta = np.zeros(design.shape[1])
    beta[0] = 1.0
    for _ in range(iterations):
        p = sigmoid(design @ beta)
        gradient = design.T @ (y - p)
        hessian = (design * (p * (1 - p))[:, None]).T @ design + 1e-9 * np.eye(len(beta))
        step = np.linalg.solve(hessian, gradient)
        beta += step
        if np.max(np.abs(step)) < 1e-10:
            break
    return beta


def fit_temperature(labels: np.ndarray, scores: np.ndarray) -> Calibration:
    (slope,) = _newton_logistic(logit(scores), np.asarray(labels, dtype=np.float64), intercept=False)
    return Calibration("temperature", slope=float(max(slope, 1e-3)))


def fit_platt(labels: np.ndarray, scores: np.ndarray) -> Calibration:
    slope, intercept = _newton_logistic(logit(scores), np.asarray(labels, dtype=np.float64), intercept=True)
    return Calibration("platt", slope=float(max(slope, 1e-3)), intercept=float(intercept))


def fit_isotonic(labels: np.ndarray, scores: np.ndarray) -> Calibration:
    """Pool adjacent violators on the sorted scores; the knots are the blocks' mean score and observed rate
    (strictly increasing x, non-decreasing y), pinned to (0, first rate) and (1, last rate)."""
    order = np.argsort(scores, kind="mergesort")
    x = np.asarray(scores, dtype=np.float64)[order]
    y = np.asarray(labels, dtype=np.float64)[order]
    blocks: list[list[float]] = []  # [sum_y, sum_x, count]
    for xi, yi in zip(x, y, strict=True):
        blocks.append([yi, xi, 1.0])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][2] >= blocks[-1][0] / blocks[-1][2]:
            sy, sx, n = blocks.pop()
            blocks[-1][0] += sy
            blocks[-1][1] += sx
            blocks[-1][2] += n
    knots_x = [b[1] / b[2] for b in blocks]
    knots_y = [b[0] / b[2] for b in blocks]
    xs, ys = [0.0], [knots_y[0]]
    for kx, ky in zip(knots_x, knots_y, strict=True):
        if xs[-1] < kx < 1.0:
            xs.append(float(kx))
            ys.append(float(ky))
    xs.append(1.0)
    ys.append(float(knots_y[-1]))
    return Calibration("isotonic", x=tuple(xs), y=tuple(np.maximum.accumulate(ys).tolist()))


FITTERS = {"temperature": fit_temperature, "platt": fit_platt, "isotonic": fit_isotonic}


def log_loss(labels: np.ndarray, scores: np.ndarray) -> float:
    p = np.clip(np.asarray(scores, dtype=np.float64), 1e-6, 1 - 1e-6)
    y = np.asarray(labels, dtype=np.float64)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def _group_folds(groups: list[str], k: int, seed: int) -> np.ndarray:
    names = sorted(set(groups))
    rng = np.random.default_rng(seed)
    rng.shuffle(names)
    fold_of = {name: i % k for i, name in enumerate(names)}
    return np.array([fold_of[g] for g in groups])


def choose_calibration(
    labels: np.ndarray,
    scores: np.ndarray,
    groups: list[str] | None = None,
    *,
    methods: tuple[str, ...] = CALIBRATION_METHODS,
    k: int = 5,
    repeats: int = 4,
) -> tuple[Calibration, dict]:
    """Fit every method on all of (labels, scores) and pick the one with the lowest cross-validated ECE
    (lesion-grouped folds, ``repeats`` shuffles; log loss breaks near-ties within 0.002). Returns the chosen
    map (fitted on everything) and the measurements {method: {ece_cv, log_loss_cv}, chosen, ...}."""
    from training.metrics import expected_calibration_error

    labels = np.asarray(labels).astype(int)
    scores = np.asarray(scores, dtype=np.float64)
    groups = groups or [str(i) for i in range(len(labels))]
    results: dict[str, dict] = {}
    for method in methods:
        eces, losses = [], []
        for repeat in range(repeats):
            folds = _group_folds(groups, k, seed=repeat)
            held = np.empty_like(scores)
            for fold in range(k):
                test = folds == fold
                held[test] = FITTERS[method](labels[~test], scores[~test]).apply(scores[test])
            eces.append(expected_calibration_error(labels, held))
            losses.append(log_loss(labels, held))
        results[method] = {"ece_cv": float(np.mean(eces)), "log_loss_cv": float(np.mean(losses))}
    best_ece = min(r["ece_cv"] for r in results.values())
    near = [m for m in methods if results[m]["ece_cv"] <= best_ece + 0.002]
    chosen = min(near, key=lambda m: results[m]["log_loss_cv"])
    calibration = FITTERS[chosen](labels, scores)
    record = {
        "chosen": chosen,
        "by_method": results,
        "ece_before": expected_calibration_error(labels, scores),
        "ece_after_in_sample": expected_calibration_error(labels, calibration.apply(scores)),
        "n": int(len(labels)),
        "positives": int(labels.sum()),
        "cross_validation": f"{k}-fold lesion-grouped, {repeats} repeats",
    }
    fitted = Calibration(
        calibration.method,
        slope=calibration.slope,
        intercept=calibration.intercept,
        x=calibration.x,
        y=calibration.y,
        fitted={
            "on": "validation split",
            "n": record["n"],
            "positives": record["positives"],
            "ece_cv": results[chosen]["ece_cv"],
        },
    )
    return fitted, record


BALANCE_STRENGTHS = tuple(np.round(np.arange(0.0, 2.01, 0.125), 3).tolist())


def choose_differential_balance(
    diagnoses: list[str],
    classes: np.ndarray,
    class_names: list[str],
    malignant: np.ndarray,
    calibrated: np.ndarray,
    groups: list[str],
    *,
    strengths: tuple[float, ...] = BALANCE_STRENGTHS,
    k: int = 5,
    seed: int = 0,
) -> dict:
    """The balance strength s (class weights ``balance_weights(validation class counts, s)``) that maximises the
    balanced multiclass accuracy of the calibrated differential on these validation images, and how well that
    choice carries to unseen lesions: each of ``k`` lesion-grouped folds is predicted with the counts and the
    strength chosen on the other folds (``balanced_accuracy_cv``). ``classes``: the raw averaged softmax (N, C);
    ``calibrated``: the calibrated risk (N,). The risk itself never changes (the weights only move shares
    within the malignant and within the benign mass). Returns {strength, weights {class: w},
    balanced_accuracy_before, balanced_accuracy_after, balanced_accuracy_cv, n, cross_validation}."""
    from inference.calibration import balance_weights, calibrated_differential
    from training.metrics import mean_class_recall

    keep = np.array([d in class_names for d in diagnoses])
    index = {c: i for i, c in enumerate(class_names)}
    truth = np.array([index[d] for d, kept in zip(diagnoses, keep, strict=True) if kept])
    classes = np.asarray(classes, dtype=np.float64)[keep]
    calibrated = np.asarray(calibrated, dtype=np.float64)[keep]
    kept_groups = [g for g, kept in zip(groups, keep, strict=True) if kept]
    n_classes = len(class_names)

    def counts_of(rows: np.ndarray) -> np.ndarray:
        return np.maximum(np.bincount(truth[rows], minlength=n_classes), 1)

    def predict(rows: np.ndarray, counts: np.ndarray, strength: float) -> np.ndarray:
        weights = balance_weights(counts, strength)
        return calibrated_differential(classes[rows], malignant, calibrated[rows], weights)

    def best(rows: np.ndarray) -> float:
        counts = counts_of(rows)
        scored = [(mean_class_recall(truth[rows], predict(rows, counts, s)), -s) for s in strengths]
        return -max(scored)[1]  # ties: the weaker re-weighting

    everything = np.arange(len(truth))
    strength = best(everything)
    folds = _group_folds(kept_groups, k, seed)
    held = np.empty_like(classes)
    for fold in range(k):
        test, train = everything[folds == fold], everything[folds != fold]
        held[test] = predict(test, counts_of(train), best(train))
    weights = balance_weights(counts_of(everything), strength)
    return {
        "strength": float(strength),
        "weights": {c: float(w) for c, w in zip(class_names, weights, strict=True)},
        "balanced_accuracy_before": mean_class_recall(truth, predict(everything, counts_of(everything), 0.0)),
        "balanced_accuracy_after": mean_class_recall(
            truth, predict(everything, counts_of(everything), strength)
        ),
        "balanced_accuracy_cv": mean_class_recall(truth, held),
        "n": int(len(truth)),
        "cross_validation": f"{k}-fold lesion-grouped (counts and strength chosen on the other folds)",
    }
