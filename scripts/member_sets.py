"""Every subset of a package's members, scored from its saved validation scores (no ONNX run).

    python scripts/member_sets.py models/default --data ../shared/data/derm/labels.csv \\
        --data ../shared/data/derm-extra/labels.csv --split models/default/training/split_derm_extra.json

For each non-empty subset: the unweighted mean of the members' raw P(malignant) (``member_NAME`` in the package's
``validation_scores.npz``, as the runtime combines them), a calibration map chosen as ``package`` chooses it, the
threshold of the shipped rule (sensitivity >= 0.95 with 95 % confidence), and at it the sensitivity, specificity
and the lowest sensitivity of an age band / source with >= 30 malignant images. Choosing members on the split
that scores them is optimistic: these numbers compare, they do not validate.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training import metrics  # noqa: E402
from training.calibrate import choose_calibration  # noqa: E402
from training.data import Split, load_dataset  # noqa: E402


def _lowest(flagged: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> float | None:
    rates = [
        float(flagged[labels & (groups == g)].mean())
        for g in set(groups.tolist())
        if (labels & (groups == g)).sum() >= metrics.MIN_GROUP_POSITIVES
    ]
    return min(rates) if rates else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package", help="a package folder with validation_scores.npz")
    parser.add_argument("--data", action="append", required=True)
    parser.add_argument("--split", required=True)
    args = parser.parse_args(argv)
    path = Path(args.package) / "validation_scores.npz"
    if not path.is_file():
        print(f"error: {path} does not exist", file=sys.stderr)
        return 2
    saved = np.load(path)
    members = sorted(k[len("member_") :] for k in saved.files if k.startswith("member_"))
    _, val = Split.load(args.split).apply(load_dataset(args.data, check_images=False))
    by_id = {r.image_id: r for r in val.records}
    missing = [str(i) for i in saved["image_id"] if str(i) not in by_id]
    if missing or not members:
        what = (
            f"{len(missing)} scored images are off the split's validation side"
            if missing
            else "no member scores"
        )
        print(f"error: {path}: {what}", file=sys.stderr)
        return 2
    records = [by_id[str(i)] for i in saved["image_id"]]
    labels = np.array([r.malignant for r in records]).astype(bool)
    bands = np.array([metrics.age_band(r.age) for r in records])
    sources = np.array([r.source for r in records])
    groups = [r.group for r in records]
    for size in range(1, len(members) + 1):
        for subset in itertools.combinations(members, size):
            raw = np.mean([saved[f"member_{m}"] for m in subset], axis=0)
            calibration, _ = choose_calibration(labels, raw, groups)
            scores = calibration.apply(raw)
            threshold = metrics.choose_threshold(labels, scores, 0.95, 0.95)["threshold"]
            flagged = scores >= threshold
            row = {
                "members": list(subset),
                "auc": round(metrics.roc_auc(labels, raw), 4),
                "sensitivity": round(float(flagged[labels].mean()), 3),
                "specificity": round(float((~flagged[~labels]).mean()), 3),
                "lowest_age_band": _lowest(flagged, labels, bands),
                "lowest_source": _lowest(flagged, labels, sources),
                "ece": round(metrics.expected_calibration_error(labels, scores), 3),
            }
            print(json.dumps(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
