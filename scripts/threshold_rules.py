"""How often would a package's threshold miss its target sensitivity on new patients? (docs/training.md,
"How the threshold is chosen")

    python scripts/threshold_rules.py models/default                  # the shipped package's validation scores
    python scripts/threshold_rules.py models/default --confidence 0 0.95 --repeats 2000

For each rule (``confidence`` 0 = flag exactly the target share of validation positives; otherwise the exact
lower confidence bound of sensitivity must reach the target, ``training.evaluate.choose_threshold``) it prints
the threshold chosen on the whole validation split with its sensitivity and specificity there, then repeats
this: split the validation scores into two stratified halves, choose the threshold on one half, measure the
other. ``short`` is the share of repeats whose held-out sensitivity fell below the target: how often the rule
would miss its promise on new patients from the same population (a different population can do worse).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training.evaluate import choose_threshold  # noqa: E402


def held_out(
    labels: np.ndarray, scores: np.ndarray, target: float, confidence: float, repeats: int, seed: int
) -> dict:
    """Choose on a random stratified half, measure on the other half, ``repeats`` times."""
    rng = np.random.default_rng(seed)
    sensitivity, specificity = [], []
    for _ in range(repeats):
        first = np.zeros(len(labels), dtype=bool)
        for value in (True, False):
            index = np.flatnonzero(labels == value)
            first[rng.permutation(index)[: len(index) // 2]] = True
        threshold = choose_threshold(labels[first], scores[first], target, confidence)["threshold"]
        other_labels, other_scores = labels[~first], scores[~first]
        sensitivity.append(float((other_scores[other_labels] >= threshold).mean()))
        specificity.append(float((other_scores[~other_labels] < threshold).mean()))
    sensitivity = np.array(sensitivity)
    return {
        "short": float((sensitivity < target).mean()),
        "mean_sensitivity": float(sensitivity.mean()),
        "mean_specificity": float(np.mean(specificity)),
    }


def compare(
    labels: np.ndarray, scores: np.ndarray, target: float, confidences: list[float], repeats: int, seed: int
) -> list[dict]:
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    rows = []
    for confidence in confidences:
        rule = choose_threshold(labels, scores, target, confidence)
        rows.append(
            {
                "confidence": confidence,
                "threshold": rule["threshold"],
                "flagged": rule["flagged"],
                "positives": rule["positives"],
                "sensitivity": rule["sensitivity"],
                "specificity": float((scores[~labels] < rule["threshold"]).mean()),
                "half_split": held_out(labels, scores, target, confidence, repeats, seed),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("package", help="a package folder (its validation_scores.npz) or a .npz file")
    parser.add_argument("--target", type=float, default=0.95, help="target sensitivity (default 0.95)")
    parser.add_argument("--confidence", type=float, nargs="+", default=[0.0, 0.8, 0.9, 0.95])
    parser.add_argument("--repeats", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    path = Path(args.package)
    path = path / "validation_scores.npz" if path.is_dir() else path
    if not path.is_file():
        print(f"error: {path} does not exist", file=sys.stderr)
        return 2
    with np.load(path) as data:
        labels, scores = data["label"], data["probability"]
    try:
        rows = compare(labels, scores, args.target, args.confidence, args.repeats, args.seed)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("confidence  threshold  flagged      sens   spec | held-out half: short  sens   spec")
    for r in rows:
        h = r["half_split"]
        print(
            f"{r['confidence']:10.2f}  {r['threshold']:9.4f}  {r['flagged']:3d}/{r['positives']:<4d} "
            f"{r['sensitivity']:6.3f} {r['specificity']:6.3f} | {h['short']:20.2f} {h['mean_sensitivity']:6.3f}"
            f" {h['mean_specificity']:6.3f}"
        )
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
