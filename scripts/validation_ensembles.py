"""Recompute the ensemble numbers of docs/training.md ("What did not move it") from saved validation scores.

    # every combination of 2..6 runs (run folders with val_predictions.npz, or a package folder: its members'
    # validation_scores.npz), best first
    python scripts/validation_ensembles.py combos models/default models/default/training/experiments/*/ --top 5
    # the shipped ONNX members with no TTA, the horizontal flip, and all 8 dihedral variants
    python scripts/validation_ensembles.py dihedral --data ../shared/data/derm/labels.csv \
        --model models/default --split models/default/training/split.json

Ensemble = unweighted mean of the members' P(malignant), as the package runs them. Choosing members on the
split that scores them is optimistic: these numbers explore, they do not validate.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training.evaluate import roc_auc  # noqa: E402


def load_scores(paths: list[str]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Labels and per-run scores from val_predictions.npz files; all runs must score the same images."""
    labels, ids, scores = None, None, {}
    for raw in paths:
        path = Path(raw)
        if path.is_dir():  # a run folder, or a model package (its members' validation scores)
            package = path / "validation_scores.npz"
            path = package if package.is_file() else path / "val_predictions.npz"
        if not path.is_file():
            print(f"skipped: {path} does not exist", file=sys.stderr)
            continue
        with np.load(path) as data:
            if ids is None:
                ids, labels = data["image_id"], data["label"]
            elif not np.array_equal(ids, data["image_id"]):
                raise SystemExit(f"error: {path} scores other images than {paths[0]}")
            members = [k for k in data.files if k.startswith("member_")]
            for key in members or ["probability"]:
                name = f"{path.parent.name}:{key[len('member_') :]}" if members else path.parent.name
                scores[name] = np.asarray(data[key], np.float64).reshape(len(ids), -1)[:, 0]
    if not scores:
        raise SystemExit("error: no val_predictions.npz among the given runs")
    return labels, scores


def combos(labels: np.ndarray, scores: dict[str, np.ndarray], sizes: range) -> list[tuple[float, tuple]]:
    rows = [
        (roc_auc(labels, np.mean([scores[n] for n in names], axis=0)), names)
        for size in sizes
        for names in itertools.combinations(sorted(scores), size)
    ]
    return sorted(rows, key=lambda row: -row[0])


def dihedral(data: str, model: str, split: str | None) -> dict:
    import onnxruntime as ort

    from inference.package import read_manifest
    from training import data as data_mod

    dataset = data_mod.load_dataset(data)
    if split:
        dataset = data_mod.Split.load(split).apply(dataset)[1]
    labels = np.array([r.malignant for r in dataset.records])
    meta = data_mod.metadata_matrix(dataset)
    manifest, _ = read_manifest(Path(model))
    out, variants = {}, []
    for member in manifest.members:
        pixels = data_mod.image_cache(dataset, member.image)
        x = data_mod.normalised(pixels, member.image)
        t = x.transpose(0, 2, 1, 3)
        views = [
            x,
            x[:, :, ::-1],
            x[:, ::-1],
            x[:, ::-1, ::-1],
            t,
            t[:, :, ::-1],
            t[:, ::-1],
            t[:, ::-1, ::-1],
        ]
        session = ort.InferenceSession(str(Path(model) / member.file), providers=["CPUExecutionProvider"])
        rows = []
        for view in views:
            view = np.ascontiguousarray(view, dtype=np.float32)
            parts = []
            for i in range(0, len(view), 32):
                feed = {member.image_input: view[i : i + 32], member.metadata_input: meta[i : i + 32]}
                parts.append(session.run(None, feed)[0][:, -1])
            rows.append(np.concatenate(parts))
        rows = np.array(rows)
        variants.append(rows)
        out[member.name] = {
            "none": roc_auc(labels, rows[0]),
            "hflip": roc_auc(labels, rows[:2].mean(0)),
            "dihedral8": roc_auc(labels, rows.mean(0)),
        }
    stacked = np.array(variants)  # members x 8 x n
    out["ensemble"] = {
        "none": roc_auc(labels, stacked[:, 0].mean(0)),
        "hflip": roc_auc(labels, stacked[:, :2].mean((0, 1))),
        "dihedral8": roc_auc(labels, stacked.mean((0, 1))),
    }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("combos", help="AUC of every combination of saved validation scores")
    c.add_argument("runs", nargs="+", help="run folders or val_predictions.npz files")
    c.add_argument("--min", type=int, default=2)
    c.add_argument("--max", type=int, default=6)
    c.add_argument("--top", type=int, default=10)
    d = sub.add_parser("dihedral", help="a package's members under no / flip / 8-fold dihedral TTA")
    d.add_argument("--data", required=True)
    d.add_argument("--model", required=True)
    d.add_argument("--split")
    args = parser.parse_args(argv)
    if args.command == "combos":
        labels, scores = load_scores(args.runs)
        for name, values in sorted(scores.items()):
            print(f"{roc_auc(labels, values):.4f}  {name}")
        rows = combos(labels, scores, range(args.min, min(args.max, len(scores)) + 1))
        print(f"{len(rows)} combinations; best:")
        for auc, names in rows[: args.top]:
            print(f"{auc:.4f}  {' + '.join(names)}")
    else:
        print(json.dumps(dihedral(args.data, args.model, args.split), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
