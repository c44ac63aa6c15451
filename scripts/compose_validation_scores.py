"""Validation scores of an ensemble grown by one member, composed from saved runtime scores (no re-scoring).

The runtime's ensemble probability and differential are weighted means over the members (equal weights in
the bundled packages), so the scores of "package A plus member M" on an image are
``(n_A * score_A + score_M) / (n_A + 1)``. This writes them as a ``validation_scores.npz`` that
``python -m training package --scores`` takes, from:

- ``--base``: scores of package A (``evaluate --out``'s ``scores.npz`` or a package's ``validation_scores.npz``),
  one or more files (their image ids are concatenated); a calibrated package's saved scores are turned back
  into raw ones (``--base-calibration``: A's manifest, whose Platt map is inverted);
- ``--member``: scores of a one-member package holding only M (``package --member M=RUN``'s
  ``validation_scores.npz``, raw).

Used for teleder-derm 1.4.0 (docs/training.md), where re-scoring five members on 1,506 validation images did
not fit the session's shared 2-core CPU. ``python -m training evaluate`` on the finished package checks the
composition against the runtime (docs/training.md gives the command and the difference measured).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

MALIGNANT = ("mel", "bcc", "akiec")


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p))


def _raw_from_platt(calibrated: np.ndarray, slope: float, intercept: float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(_logit(calibrated) - intercept) / slope))


def load_base(path: Path, manifest: dict | None) -> dict[str, np.ndarray]:
    data = dict(np.load(path, allow_pickle=False))
    out = {"image_id": data["image_id"].astype(str), "raw_probability": data["raw_probability"].astype(float)}
    calibration = (manifest or {}).get("calibration")
    members = [k for k in data if k.startswith("member_")]
    if calibration:
        if calibration.get("method") != "platt":
            raise SystemExit(f"{path}: only a Platt calibration can be inverted")
        slope, intercept = calibration["slope"], calibration["intercept"]
        for key in members:
            out[key] = _raw_from_platt(data[key].astype(float), slope, intercept)
        classes_order = (manifest.get("differential") or {}).get("classes")
        mask = np.array([c in MALIGNANT for c in classes_order])
        cal = data["probability"].astype(float)[:, None]
        raw = out["raw_probability"][:, None]
        classes = data["classes"].astype(float)
        out["classes"] = np.where(
            mask,
            classes / np.clip(cal, 1e-12, None) * raw,
            classes / np.clip(1 - cal, 1e-12, None) * (1 - raw),
        )
    else:
        for key in members:
            out[key] = data[key].astype(float)
        out["classes"] = data["classes"].astype(float)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", action="append", required=True, help="scores.npz of package A (repeatable)")
    parser.add_argument(
        "--base-calibration",
        action="append",
        help="manifest.json of the package each --base file was scored with calibration (in --base order; "
        "'none' for an uncalibrated one)",
    )
    parser.add_argument("--member", required=True, help="validation_scores.npz of the one-member package")
    parser.add_argument("--name", required=True, help="the new member's name in the grown package")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    manifests = args.base_calibration or ["none"] * len(args.base)
    parts = [
        load_base(Path(b), None if m == "none" else json.loads(Path(m).read_text()))
        for b, m in zip(args.base, manifests, strict=True)
    ]
    base = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    member = dict(np.load(args.member, allow_pickle=False))
    index = {str(i): k for k, i in enumerate(member["image_id"])}
    missing = [i for i in base["image_id"] if i not in index]
    if missing:
        raise SystemExit(f"{args.member} has no score for {len(missing)} images, e.g. {missing[:3]}")
    rows = np.array([index[i] for i in base["image_id"]])
    n = sum(1 for k in base if k.startswith("member_"))
    new_raw = member["raw_probability"].astype(float)[rows]
    out = {
        "image_id": base["image_id"],
        "raw_probability": (n * base["raw_probability"] + new_raw) / (n + 1),
        "classes": (n * base["classes"] + member["classes"].astype(float)[rows]) / (n + 1),
        f"member_{args.name}": new_raw,
        **{k: v for k, v in base.items() if k.startswith("member_")},
    }
    np.savez(args.out, **out)
    print(json.dumps({"images": len(rows), "members": n + 1, "out": args.out}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
