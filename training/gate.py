"""The AI safety gate's training commands: ``gate`` (fit the OOD Gaussians into a package) and
``evaluate-gate`` (rejection rates on real dermoscopy, non-dermoscopy and degraded dermoscopy).

Both score images exactly as the workers do: the shared quality checks (``inference.quality``) and the
package's fused ONNX session with its pooled-feature outputs (``inference.runtime``). No TensorFlow.

Which images fit the gate: the rows of each ``--data`` CSV on the training side of ``--split`` (derm's
split.json); a CSV the split does not cover (derm-extra) is split by a hash of its lesion group: 35 % fit,
15 % calibration, 50 % held out for ``evaluate-gate``. 15 % of the split's training side is held back for
calibration too. The threshold is the highest per-source 99th percentile of the calibration scores, so that
each source loses about 1 % of its real dermoscopy to the gate (target <= 2 %).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from inference.ood import DEFAULT_METHOD, METHODS, OodGate, fit_member
from inference.package import (
    MANIFEST_NAME,
    Manifest,
    gate_quality_thresholds,
    read_manifest,
    sha256_file,
)
from inference.preprocessing import PreprocessingError, load_image
from inference.quality import REASONS, failed_reasons, quality_checks

ROLES = ("fit", "calibrate", "validate")
FEATURE_KEY = "features"


def _bucket(text: str) -> float:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def assign_roles(records, split_path: str | None) -> list[str]:
    """fit / calibrate / validate for each record (see the module docstring)."""
    train, val = set(), set()
    if split_path:
        split = json.loads(Path(split_path).read_text())
        train, val = set(split.get("train", [])), set(split.get("val", []))
    roles = []
    for record in records:
        b = _bucket(record.group)
        if record.image_id in val:
            roles.append("validate")
        elif record.image_id in train:
            roles.append("calibrate" if b < 0.15 else "fit")
        else:
            roles.append("fit" if b < 0.35 else "calibrate" if b < 0.5 else "validate")
    return roles


def find_feature_tensor(onnx_path: Path) -> str:
    """The pooled backbone features of a member: the output of its last GlobalAveragePool (or of the
    Squeeze/Flatten/Reshape right after it)."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    pools = [n for n in graph.node if n.op_type == "GlobalAveragePool"]
    if not pools:
        raise ValueError(
            f"{onnx_path.name}: no GlobalAveragePool node; name the feature tensor with --tensor"
        )
    name = pools[-1].output[0]
    for node in graph.node:
        if node.op_type in ("Squeeze", "Flatten", "Reshape") and node.input and node.input[0] == name:
            return node.output[0]
    return name


def _ensemble(folder: Path, manifest: Manifest, features: dict[int, str] | None = None):
    from inference.runtime import CPU, Ensemble, RuntimeConfig

    return Ensemble(folder, manifest, RuntimeConfig(providers=(CPU,)), features=features, heatmaps=False)


def score_images(ensemble, items, *, thresholds, batch: int = 16, progress: str = "") -> dict:
    """Quality measures, failed quality reasons, ensemble probability and pooled features of every item
    (``items``: (image source, (age, sex, site))). Unreadable images get reason ``unreadable``."""
    out = {"reasons": [], "quality": [], "probability": [], "features": defaultdict(list), "ood": []}
    started = time.perf_counter()
    for start in range(0, len(items), batch):
        chunk = items[start : start + batch]
        images, metas, keep = [], [], []
        for source, meta in chunk:
            try:
                image = load_image(source)
            except PreprocessingError:
                out["reasons"].append(["unreadable"])
                out["quality"].append({})
                continue
            checks = quality_checks(image, thresholds)
            out["reasons"].append(failed_reasons(checks))
            out["quality"].append({c.name: c.value for c in checks})
            images.append(image)
            metas.append(meta)
            keep.append(len(out["reasons"]) - 1)
        if not images:
            continue
        outcomes, features, _ = ensemble.run_with_features(ensemble.prepare(images, metas))
        scores = ensemble.ood.score(features) if ensemble.ood is not None and features else None
        for j, index in enumerate(keep):
            out["probability"].append((index, outcomes[j].probability))
            out["ood"].append((index, None if scores is None else float(scores[j])))
        for name, values in features.items():
            out["features"][name].append((keep, values))
        if progress and (start // batch) % 20 == 0:
            rate = (start + len(chunk)) / max(1e-6, time.perf_counter() - started)
            print(f"{progress}: {start + len(chunk)}/{len(items)} images ({rate:.1f}/s)", flush=True)
    n = len(out["reasons"])
    probability = np.full(n, np.nan)
    ood = np.full(n, np.nan)
    for index, value in out["probability"]:
        probability[index] = value
    for index, value in out["ood"]:
        ood[index] = np.nan if value is None else value
    features = {}
    for name, parts in out["features"].items():
        dim = parts[0][1].shape[1]
        array = np.full((n, dim), np.nan, dtype=np.float32)
        for keep, values in parts:
            array[keep] = values
        features[name] = array
    return {
        "reasons": out["reasons"],
        "quality": out["quality"],
        "probability": probability,
        "ood": ood,
        "features": features,
    }


def _records(csv_paths: list[str], split: str | None, max_per_source: int | None, seed: int = 0):
    from training.data import load_dataset

    rows = []
    for path in csv_paths:
        dataset = load_dataset(path, check_images=False)
        for record, role in zip(dataset.records, assign_roles(dataset.records, split), strict=True):
            rows.append((Path(path).parent.name, record, role))
    if max_per_source:
        rng = np.random.default_rng(seed)
        grouped = defaultdict(list)
        for row in rows:
            grouped[(row[0], row[1].source, row[2])].append(row)
        rows = []
        for key in sorted(grouped):
            members = grouped[key]
            if len(members) > max_per_source:
                members = [
                    members[i] for i in sorted(rng.choice(len(members), max_per_source, replace=False))
                ]
            rows.extend(members)
    return rows


def _source_label(dataset: str, source: str) -> str:
    return f"{dataset}:{source}"


def gate_fit(
    package: str | Path,
    data: list[str],
    *,
    split: str | None = None,
    method: str = DEFAULT_METHOD,
    dims: int = 128,
    shrinkage: float = 0.1,
    quantile: float = 99.0,
    max_per_source: int | None = None,
    cache: str | Path | None = None,
    tensor: str | None = None,
) -> dict:
    """Fit the OOD gate on ``data`` with the package's own features and write it into the package: the
    arrays beside the ONNX files, ``members[].outputs.features`` and the manifest's ``gate`` section."""
    folder = Path(package)
    manifest, _ = read_manifest(folder)
    raw = json.loads((folder / MANIFEST_NAME).read_text())
    raw.pop("gate", None)  # refit from scratch: the old gate must not shape the new one
    for k, member in enumerate(manifest.members):
        outputs = dict(raw["members"][k].get("outputs") or {})
        outputs[FEATURE_KEY] = tensor or find_feature_tensor(folder / member.file)
        raw["members"][k]["outputs"] = outputs
    raw["gate"] = {
        "quality": gate_quality_thresholds(manifest),
        "ood": {"method": method, "output": FEATURE_KEY, "threshold": 1.0, "arrays": {}},
    }
    from inference.package import parse_manifest

    tensors = {k: raw["members"][k]["outputs"][FEATURE_KEY] for k in range(len(manifest.members))}
    rows = [r for r in _records(data, split, max_per_source) if r[2] in ("fit", "calibrate")]
    features = _cached_features(folder, manifest, rows, cache, tensors)
    labels = np.array([r[1].malignant for r in rows])
    roles = np.array([r[2] for r in rows])
    usable = np.all([np.all(np.isfinite(f), axis=1) for f in features.values()], axis=0)
    fit_mask = usable & (roles == "fit")
    members = {
        name: fit_member(values[fit_mask], labels[fit_mask], method=method, dims=dims, shrinkage=shrinkage)
        for name, values in features.items()
    }
    gate = OodGate(members=members, threshold=1.0)
    scores = gate.score({name: np.nan_to_num(values) for name, values in features.items()})
    calibrate = usable & (roles == "calibrate")
    by_source = defaultdict(list)
    for index in np.flatnonzero(calibrate):
        dataset, record, _ = rows[index]
        by_source[_source_label(dataset, record.source)].append(scores[index])
    per_source = {s: float(np.percentile(v, quantile)) for s, v in by_source.items() if len(v) >= 20}
    if not per_source:
        raise ValueError("fewer than 20 calibration images per source: give more --data")
    threshold = max(per_source.values())
    arrays = {}
    for name, gaussians in members.items():
        arrays[name] = {}
        for array_name, array in gaussians.arrays().items():
            file = f"gate_{name}_{array_name}.npy"
            np.save(folder / file, array.astype(np.float32), allow_pickle=False)
            arrays[name][array_name] = {"file": file, "sha256": sha256_file(folder / file)}
    raw["gate"]["ood"] = {
        "method": method,
        "output": FEATURE_KEY,
        "threshold": round(float(threshold), 4),
        "arrays": arrays,
        "dims": int(next(iter(members.values())).dims),
        "shrinkage": shrinkage,
        "fitted_on": {
            "data": [str(Path(p)) for p in data],
            "split": split,
            "n_fit": int(fit_mask.sum()),
            "n_calibrate": int(calibrate.sum()),
            "threshold_rule": f"highest per-source {quantile:g}th percentile of the calibration scores",
            "calibration_percentiles": {s: round(v, 4) for s, v in sorted(per_source.items())},
        },
    }
    parse_manifest(raw)  # refuse to write a manifest the platform would refuse
    (folder / MANIFEST_NAME).write_text(json.dumps(raw, indent=2))
    write_card_section(folder, raw["gate"])
    return {"threshold": raw["gate"]["ood"]["threshold"], **raw["gate"]["ood"]["fitted_on"]}


CARD_HEADING = "## AI safety gate"


def write_card_section(folder: Path, gate: dict, measured: dict | None = None) -> None:
    """Replace (or add) the model card's "AI safety gate" section: what the gate checks, its thresholds, what
    it was fitted on and, given ``measured`` (an ``evaluate-gate`` result), its rejection rates."""
    from inference.package import model_card_file

    card = model_card_file(folder)
    if card is None:
        return
    text = card.read_text()
    start = text.find(CARD_HEADING)
    if start >= 0:
        end = text.find("\n## ", start + len(CARD_HEADING))
        text = text[:start].rstrip() + ("\n\n" + text[end + 1 :] if end >= 0 else "\n")
    ood = gate.get("ood") or {}
    lines = [
        CARD_HEADING,
        "",
        "The AI does not assess an image that fails a quality check or does not look like dermoscopy: such an "
        "image gets no probability, and a case with no assessed image gets no risk (it is reviewed as "
        '"AI could not assess").',
        "",
        "- Quality checks (on the lesion-sized centre at a fixed working resolution): "
        + ", ".join(f"{k} {v:g}" for k, v in (gate.get("quality") or {}).items())
        + ".",
        f"- Out-of-distribution score: {ood.get('method', 'none')}, {ood.get('dims', '?')} principal components "
        f"per member, threshold {ood.get('threshold', 'n/a')} "
        f"({(ood.get('fitted_on') or {}).get('threshold_rule', '')}); fitted on "
        f"{(ood.get('fitted_on') or {}).get('n_fit', '?')} training images, calibrated on "
        f"{(ood.get('fitted_on') or {}).get('n_calibrate', '?')} others.",
    ]
    if measured:
        lines.append(
            f"- Measured (`python -m training evaluate-gate`): real held-out dermoscopy rejected "
            f"{measured['in_dist_rejected']:.1%} of {measured['in_dist_n']}; generated non-dermoscopy rejected "
            f"{measured['ood_rejected']:.1%} of {measured['ood_n']}; degraded dermoscopy flagged "
            f"{measured.get('degraded_flagged', float('nan')):.1%} of {measured.get('degraded_n', 0)}."
        )
    lines.append(
        "- Limits: the non-dermoscopy used to choose the method was generated (drawings of faces, objects, "
        "pages, screens, flat colours, noise) plus a few real photographs; real-world photographs may score "
        "differently. Real dermoscopy from sources unlike the training ones may be rejected more often."
    )
    card.write_text(text.rstrip() + "\n\n" + "\n".join(lines) + "\n")


def _cached_features(folder: Path, manifest: Manifest, rows, cache, tensors: dict[int, str]) -> dict:
    ids = [f"{d}:{r.image_id}" for d, r, _ in rows]
    if cache and Path(cache).is_file():
        stored = np.load(cache, allow_pickle=False)
        if list(stored["ids"]) == ids:
            return {k[len("f_") :]: stored[k] for k in stored.files if k.startswith("f_")}
    ensemble = _ensemble(folder, manifest, tensors)
    items = [(r.path, (r.age, r.sex or None, r.site or None)) for _, r, _ in rows]
    scored = score_images(
        ensemble, items, thresholds=gate_quality_thresholds(manifest), progress="gate features"
    )
    features = scored["features"]
    if cache:
        np.savez(cache, ids=np.array(ids), **{f"f_{k}": v for k, v in features.items()})
    return features


def evaluate_gate(
    *,
    in_dist: list[str],
    ood: str | Path,
    model: str | Path,
    split: str | None = None,
    degrade: bool = True,
    max_per_source: int | None = None,
    save_features: str | Path | None = None,
) -> dict:
    """Rejection rates of the package's gate (quality checks + OOD score): on the held-out real dermoscopy
    of ``in_dist`` (the validate side, see :func:`assign_roles`), on every image under ``ood`` (its first
    folder level is the source) and, with ``degrade``, on blurred / dark / burnt-out copies of the held-out
    dermoscopy."""
    from training.evaluate import load_package
    from training.ood_images import DEGRADATIONS
    from training.ood_images import degrade as degrade_image

    folder, manifest = load_package(model)
    ensemble = _ensemble(folder, manifest)
    thresholds = gate_quality_thresholds(manifest)
    threshold = ensemble.ood.threshold if ensemble.ood is not None else None

    saved = {}

    def rejected(scored, name: str = "") -> tuple[list[bool], list[list[str]]]:
        for member, values in scored["features"].items():
            saved[f"{name}/{member}"] = values
        saved[f"{name}/quality_failed"] = np.array([bool(r) for r in scored["reasons"]])
        reasons = []
        for r, score in zip(scored["reasons"], scored["ood"], strict=True):
            extra = (
                ["not_dermoscopy"]
                if threshold is not None and np.isfinite(score) and score > threshold
                else []
            )
            reasons.append(list(r) + extra)
        return [bool(r) for r in reasons], reasons

    rows = [r for r in _records(in_dist, split, max_per_source) if r[2] == "validate"]
    items = [(r.path, (r.age, r.sex or None, r.site or None)) for _, r, _ in rows]
    real_flags, real_reasons = rejected(score_images(ensemble, items, thresholds=thresholds), "real")
    sources = [_source_label(d, r.source) for d, r, _ in rows]

    ood_root = Path(ood)
    ood_paths = sorted(p for p in ood_root.rglob("*") if p.is_file() and not p.name.startswith("."))
    ood_sources = [
        p.relative_to(ood_root).parts[0] if len(p.relative_to(ood_root).parts) > 1 else "." for p in ood_paths
    ]
    ood_items = [(str(p), (None, None, None)) for p in ood_paths]
    ood_flags, ood_reasons = rejected(score_images(ensemble, ood_items, thresholds=thresholds), "ood")

    def rates(flags, labels) -> dict:
        groups = defaultdict(list)
        for flag, label in zip(flags, labels, strict=True):
            groups[label].append(flag)
        return {k: {"n": len(v), "rejected": round(float(np.mean(v)), 4)} for k, v in sorted(groups.items())}

    result = {
        "model": manifest.label,
        "gate": "on" if threshold is not None else "quality checks only (no OOD arrays)",
        "ood_threshold": threshold,
        "in_dist_n": len(real_flags),
        "in_dist_rejected": round(float(np.mean(real_flags)), 4) if real_flags else None,
        "ood_n": len(ood_flags),
        "ood_rejected": round(float(np.mean(ood_flags)), 4) if ood_flags else None,
        "by_reason": {
            "in_dist": dict(Counter(x for r in real_reasons for x in r)),
            "ood": dict(Counter(x for r in ood_reasons for x in r)),
        },
        "in_dist_by_source": rates(real_flags, sources),
        "ood_by_source": rates(ood_flags, ood_sources),
    }
    if degrade and items:
        # One degradation per held-out image, the kinds in turn (blur, dark, burnt out, blur, ...).
        degraded_items, degraded_kinds = [], []
        for i, (path, meta) in enumerate(items):
            kind = DEGRADATIONS[i % len(DEGRADATIONS)]
            degraded_items.append((degrade_image(load_image(path), kind), meta))
            degraded_kinds.append(kind)
        flags, reasons = rejected(score_images(ensemble, degraded_items, thresholds=thresholds), "degraded")
        result["degraded_n"] = len(flags)
        result["degraded_flagged"] = round(float(np.mean(flags)), 4)
        result["degraded_by_kind"] = rates(flags, degraded_kinds)
        result["by_reason"]["degraded"] = dict(Counter(x for r in reasons for x in r))
    result["reasons"] = sorted(REASONS)
    if save_features:  # for comparing gate variants offline without running the model again
        np.savez(
            save_features,
            real_sources=np.array(sources),
            ood_sources=np.array(ood_sources),
            **{k.replace("/", "__"): v for k, v in saved.items()},
        )
    return result


def add_parsers(sub) -> None:
    """The ``gate``, ``evaluate-gate`` and ``make-ood`` subcommands (wired into ``python -m training``)."""
    p = sub.add_parser(
        "gate",
        help="fit the AI safety gate's OOD Gaussians on a package's own features and write them into it",
        description=__doc__,
    )
    p.add_argument("--package", required=True, help="package folder (rewritten in place: arrays + manifest)")
    p.add_argument("--data", action="append", required=True, help="labels CSV of real dermoscopy (repeat)")
    p.add_argument("--split", help="split.json: only its training side fits, its validation side is held out")
    p.add_argument(
        "--method", choices=sorted(METHODS), default=DEFAULT_METHOD, help="OOD score (see inference/ood.py)"
    )
    p.add_argument("--dims", type=int, default=128, help="principal components per member (default 128)")
    p.add_argument("--shrinkage", type=float, default=0.1, help="covariance shrinkage towards identity")
    p.add_argument("--quantile", type=float, default=99.0, help="calibration percentile per source")
    p.add_argument("--max-per-source", type=int, help="subsample each source and role (faster)")
    p.add_argument("--cache", help="npz file caching the extracted features between runs")
    p.add_argument("--tensor", help="feature tensor of every member (default: the last GlobalAveragePool's)")
    p = sub.add_parser(
        "evaluate-gate",
        help="rejection rates of the gate on held-out dermoscopy, non-dermoscopy and degraded dermoscopy",
    )
    p.add_argument("--in-dist", action="append", required=True, help="labels CSV of real dermoscopy (repeat)")
    p.add_argument("--ood", required=True, help="folder of images that are not usable dermoscopy")
    p.add_argument("--model", default="active", help="package folder or .zip, or 'active' (default)")
    p.add_argument("--split", help="split.json: score only held-out images (its validation side)")
    p.add_argument("--no-degrade", action="store_true", help="skip the degraded-dermoscopy measurement")
    p.add_argument("--max-per-source", type=int, help="subsample each source (faster)")
    p.add_argument("--save-features", help="npz file for the pooled features of every scored image")
    p.add_argument(
        "--update-card", action="store_true", help="write the measured rates into the package's model card"
    )
    p.add_argument("--json", action="store_true", help="print only the JSON line")
    p = sub.add_parser("make-ood", help="write a generated non-dermoscopy image set (per kind folders)")
    p.add_argument("--out", required=True)
    p.add_argument("--per-kind", type=int, default=40)
    p.add_argument("--seed", type=int, default=1)


def run_command(args) -> int:
    if args.command == "gate":
        result = gate_fit(
            args.package,
            args.data,
            split=args.split,
            method=args.method,
            dims=args.dims,
            shrinkage=args.shrinkage,
            quantile=args.quantile,
            max_per_source=args.max_per_source,
            cache=args.cache,
            tensor=args.tensor,
        )
        print(json.dumps(result))
        return 0
    if args.command == "evaluate-gate":
        result = evaluate_gate(
            in_dist=args.in_dist,
            ood=args.ood,
            model=args.model,
            split=args.split,
            degrade=not args.no_degrade,
            max_per_source=args.max_per_source,
            save_features=args.save_features,
        )
        if args.update_card and Path(args.model).is_dir():
            manifest, _ = read_manifest(Path(args.model))
            write_card_section(Path(args.model), manifest.raw.get("gate") or {}, result)
        print(json.dumps(result) if args.json else json.dumps(result, indent=2))
        return 0
    from training.ood_images import write_set

    paths = write_set(Path(args.out), args.per_kind, seed=args.seed)
    print(json.dumps({"out": args.out, "images": len(paths)}))
    return 0


__all__ = ["METHODS", "add_parsers", "evaluate_gate", "gate_fit", "run_command"]
