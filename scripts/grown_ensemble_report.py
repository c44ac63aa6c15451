"""Compare the bundled ensemble with it grown by a member, on composed validation scores.

Reads a ``validation_scores.npz`` written by ``scripts/compose_validation_scores.py`` (the base package's four
members + the new one, raw probabilities) and prints, for the base, the new member alone and a few mixes:
AUC overall / on ../shared/data/derm's images / on ../shared/data/derm-extra's, and at each mix's own threshold
(the package rule: sensitivity >= 0.95 with 95 % confidence) sensitivity, specificity and the sensitivity of the
age bands 30-49 and under 30. ``docs/training.md`` quotes its output::

    python scripts/grown_ensemble_report.py \\
        models/default/training/experiments/lite0x_derm_extra_1epoch/scores_grown_1.3.0_plus_lite0x_val1506.npz \\
        --member lite0x --data ../shared/data/derm/labels.csv --extra ../shared/data/derm-extra/labels.csv
"""

from __future__ import annotations

import argparse
import csv

import numpy as np

from training.metrics import choose_threshold, roc_auc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scores")
    parser.add_argument("--member", required=True, help="the added member's name")
    parser.add_argument("--data", required=True, help="the base data CSV (derm)")
    parser.add_argument("--extra", required=True, help="the added data CSV (derm-extra)")
    args = parser.parse_args(argv)
    rows, extra_ids = {}, set()
    for path in (args.data, args.extra):
        with open(path, newline="") as handle:
            for row in csv.DictReader(handle):
                rows[row["image_id"]] = row
                if path == args.extra:
                    extra_ids.add(row["image_id"])
    z = dict(np.load(args.scores))
    ids = [str(i) for i in z["image_id"]]
    y = np.array([int(rows[i]["malignant"]) for i in ids])
    age = np.array([float(rows[i]["age"]) if rows[i]["age"] else np.nan for i in ids])
    extra = np.array([i in extra_ids for i in ids])
    n = sum(1 for k in z if k.startswith("member_")) - 1
    new = z[f"member_{args.member}"]
    base = ((n + 1) * z["raw_probability"] - new) / n
    mixes = {
        f"base ({n} members)": base,
        f"{args.member} alone": new,
        f"base + {args.member}": z["raw_probability"],
        f"base + {args.member} x2": (n * base + 2 * new) / (n + 2),
    }
    print(f"{len(y)} images ({y.sum()} malignant): {int((~extra).sum())} derm, {int(extra.sum())} derm-extra")
    print(
        "| ensemble | AUC all | AUC derm | AUC derm-extra | threshold | sens | spec | sens 30-49 | sens < 30 |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    band = (age >= 30) & (age < 50)
    young = age < 30
    for name, p in mixes.items():
        threshold = choose_threshold(y, p, 0.95, confidence=0.95)["threshold"]
        flagged = p >= threshold
        cells = [
            roc_auc(y, p),
            roc_auc(y[~extra], p[~extra]),
            roc_auc(y[extra], p[extra]),
            threshold,
            flagged[y == 1].mean(),
            1 - flagged[y == 0].mean(),
            flagged[(y == 1) & band].mean(),
            flagged[(y == 1) & young].mean(),
        ]
        counts = f" ({int(((y == 1) & band).sum())} / {int(((y == 1) & young).sum())} malignant)"
        print(f"| {name} | " + " | ".join(f"{c:.3f}" for c in cells) + f" |{counts}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
