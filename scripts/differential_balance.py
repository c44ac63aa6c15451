"""What ``package --balance-differential`` would choose for saved scores, without writing a package.

    python scripts/differential_balance.py SCORES.npz --data ../shared/data/derm/labels.csv \\
        --data ../shared/data/derm-extra/labels.csv --split models/default/training/split_derm_extra.json

SCORES.npz: ``evaluate --out``'s ``scores.npz`` or a package's ``validation_scores.npz`` (image_id, probability,
classes). The class shares within each side are what the balance re-weights, so a calibrated differential
serves as well as the raw one. Prints the JSON of ``training.calibrate.choose_differential_balance``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training.calibrate import choose_differential_balance  # noqa: E402
from training.data import Split, load_dataset  # noqa: E402
from training.package import ham_differential  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scores")
    parser.add_argument("--data", action="append", required=True)
    parser.add_argument("--split", required=True)
    args = parser.parse_args(argv)
    saved = np.load(args.scores)
    if "classes" not in saved.files:
        print(f"error: {args.scores} has no classes (the package has no differential)", file=sys.stderr)
        return 2
    _, val = Split.load(args.split).apply(load_dataset(args.data, check_images=False))
    by_id = {r.image_id: r for r in val.records}
    missing = [str(i) for i in saved["image_id"] if str(i) not in by_id]
    if missing:
        print(f"error: {len(missing)} scored images are not on the split's validation side", file=sys.stderr)
        return 2
    records = [by_id[str(i)] for i in saved["image_id"]]
    differential = ham_differential()
    names = differential["classes"]
    result = choose_differential_balance(
        [r.diagnosis or "" for r in records],
        saved["classes"],
        names,
        np.array([c in differential["malignant"] for c in names]),
        saved["probability"],
        [r.group for r in records],
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
