"""``add-cam`` and ``evaluate-explanations``: put the heatmap into a package, and check that it is faithful.

``add-cam`` copies a package and adds the Grad-CAM output to every member it fits (``training.cam``): the
existing outputs are computed by the same nodes, so thresholds, calibration and the gate stay valid.

``evaluate-explanations`` runs the deletion test (Petsiuk et al., RISE, 2018) on malignant images: the top k %
of each image's pixels by heatmap are replaced (by the image's mean colour, or a strong blur) and the image is
scored again through ``inference.runtime``, as the workers score it; the same with a random map of the same
grid (so that random removal comes in blobs of the same size as the map's, not as scattered pixels, which
networks barely notice). The area under the mean-probability-over-k curve is lower when the map finds what the
score depends on: ``deletion_ratio`` = map area / random area (the target is <= 0.7). Needs no TensorFlow.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

DEFAULT_FRACTIONS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5)


def add_parsers(sub) -> None:
    """The ``add-cam`` and ``evaluate-explanations`` subcommands (wired into ``python -m training``)."""
    p = sub.add_parser(
        "add-cam",
        help="copy a package with the heatmap (Grad-CAM of P(malignant)) added to its members' ONNX graphs",
        description="Copy --model to --out with the map added as each member's outputs.cam (members whose graph "
        "is not backbone -> average pool -> concat -> Dense -> softmax/sigmoid keep none; the output says "
        "why). Other outputs, thresholds, calibration and the gate are unchanged.",
    )
    p.add_argument("--model", required=True, help="source package folder, .zip or 'active'")
    p.add_argument("--out", required=True, help="new package folder (must not exist)")
    p.add_argument("--version", help="version of the new package (default: the source's)")
    p = sub.add_parser(
        "evaluate-explanations",
        help="deletion test of the heatmaps on malignant images (map vs random pixels, re-scored)",
        description=__doc__,
    )
    p.add_argument("--data", required=True, action="append", help="labels CSV (repeatable)")
    p.add_argument("--model", default="active", help="package folder or .zip, or 'active' (default)")
    p.add_argument("--split", help="a split.json: use only its validation side")
    p.add_argument("--limit", type=int, default=100, help="malignant images at most (default 100)")
    p.add_argument(
        "--fractions",
        default=",".join(str(f) for f in DEFAULT_FRACTIONS),
        help="comma-separated shares of pixels removed (default %(default)s)",
    )
    p.add_argument("--fill", choices=("mean", "blur"), default="mean", help="what removed pixels become")
    p.add_argument("--seed", type=int, default=0, help="seed of the random maps")
    p.add_argument(
        "--reference",
        action="append",
        help="labels CSV of the reference library (repeatable): measure retrieval_precision_at_5 and "
        "retrieval_ms_p95 of the similar-lesion search, the validation images (both labels) as queries; images "
        "and lesions that are also queries are left out of the references",
    )
    p.add_argument("--retrieval-queries", type=int, default=300, help="query images at most (default 300)")
    p.add_argument("--reference-limit", type=int, help="reference images at most (sampled; default all)")
    p.add_argument("--json", action="store_true", help="print only the JSON line")


def run_command(args) -> int:
    if args.command == "add-cam":
        from training.cam import upgrade_package
        from training.evaluate import load_package

        source, _ = load_package(args.model)
        print(json.dumps(upgrade_package(source, Path(args.out), version=args.version)))
        return 0
    result = evaluate_explanations(
        args.data,
        args.model,
        split=args.split,
        limit=args.limit,
        fractions=_fractions(args.fractions),
        fill=args.fill,
        seed=args.seed,
    )
    result.update(retrieval_metrics(args))
    if not args.json:
        curve = ", ".join(
            f"{k:.0%}: {m:.3f} / {r:.3f}"
            for k, m, r in zip(result["fractions"], result["curve_map"], result["curve_random"], strict=True)
        )
        print(f"mean malignant probability, map / random removal: {curve}")
    print(json.dumps(result))
    return 0


def retrieval_metrics(args) -> dict:
    """The similar-cases half of the faithfulness check (``retrieval_precision_at_5``, ``retrieval_ms_p95``,
    ``references``): the validation images (both labels) searched among ``--reference`` CSV's images with the
    package's embedding (``training.retrieval_eval``). Without ``--reference`` nothing is measured and nothing
    is printed for it."""
    if not args.reference:
        return {}
    from training.data import Split, load_dataset
    from training.retrieval_eval import retrieval_metrics as measure

    dataset = load_dataset(args.data, check_images=False)
    if args.split:
        _, dataset = Split.load(args.split).apply(dataset)
    return measure(
        args.model,
        dataset.records,
        args.reference,
        max_queries=args.retrieval_queries,
        max_references=args.reference_limit,
        seed=args.seed,
    )


def _fractions(text: str) -> tuple[float, ...]:
    try:
        values = sorted({float(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise ValueError(f"--fractions must be comma-separated numbers, got {text!r}") from None
    if not values or values[0] < 0 or values[-1] >= 1:
        raise ValueError("--fractions must lie in [0, 1)")
    return tuple(values) if values[0] == 0 else (0.0, *values)


def removal_masks(grid: np.ndarray, width: int, height: int, fractions) -> list[np.ndarray]:
    """For each fraction k, the (height, width) boolean mask of the k share of pixels where the map (upsampled
    to the image, bilinear) is highest."""
    from inference.explain import resize_map

    values = resize_map(np.asarray(grid, np.float64), height, width).ravel()
    order = np.argsort(-values, kind="stable")
    masks = []
    for k in fractions:
        mask = np.zeros(values.size, dtype=bool)
        mask[order[: round(k * values.size)]] = True
        masks.append(mask.reshape(height, width))
    return masks


def remove(image: Image.Image, mask: np.ndarray, fill: str) -> Image.Image:
    """``image`` with the masked pixels replaced by its mean colour or by a strong blur of it."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    if fill == "blur":
        radius = max(image.width, image.height) / 16
        replacement = np.asarray(image.convert("RGB").filter(ImageFilter.GaussianBlur(radius)), np.float32)
    else:
        replacement = np.broadcast_to(pixels.reshape(-1, 3).mean(0), pixels.shape)
    out = np.where(mask[..., None], replacement, pixels)
    return Image.fromarray(out.round().clip(0, 255).astype(np.uint8))


def deletion_area(curve: list[float], fractions) -> float:
    """Area under the mean-probability curve over k, divided by the k range (so 1.0 means no drop from 1.0)."""
    k = np.asarray(fractions, np.float64)
    y = np.asarray(curve, np.float64)
    span = float(k[-1] - k[0]) or 1.0
    return float(np.sum((y[1:] + y[:-1]) * np.diff(k)) / 2.0 / span)


def evaluate_explanations(
    data,
    model: str | Path,
    *,
    split: str | None = None,
    limit: int = 100,
    fractions=DEFAULT_FRACTIONS,
    fill: str = "mean",
    seed: int = 0,
) -> dict:
    """The deletion test on up to ``limit`` malignant images of ``data`` (the validation side of ``split``)."""
    from inference.preprocessing import load_image
    from inference.runtime import Ensemble
    from inference.sessions import CPU, RuntimeConfig
    from training.data import Split, load_dataset
    from training.evaluate import load_package

    if limit < 1:
        raise ValueError("--limit must be at least 1")
    folder, manifest = load_package(model)
    config = RuntimeConfig(providers=(CPU,))
    explainer = Ensemble(folder, manifest, config)
    if not explainer.has_heatmaps:
        raise ValueError(
            f"{manifest.label} produces no heatmap: add one with python -m training add-cam --model ... --out ..."
        )
    scorer = Ensemble(folder, manifest, config, heatmaps=False)
    dataset = load_dataset(data, check_images=False)
    if split:
        _, dataset = Split.load(split).apply(dataset)
    records = [r for r in dataset.records if r.malignant][:limit]
    if not records:
        raise ValueError("no malignant images to test (check --data and --split)")
    rng = np.random.default_rng(seed)
    curves = {"map": [], "random": []}
    started = time.perf_counter()
    for done, record in enumerate(records):
        if done and done % 10 == 0:
            print(f"deletion test: {done}/{len(records)} images", file=sys.stderr, flush=True)
        image = load_image(record.path)
        meta = (record.age, record.sex or None, record.site or None)
        outcome = explainer.run(explainer.prepare([image], [meta]))[0][0]
        grid = outcome.heatmap
        shuffled = rng.random(grid.shape)
        variants = []
        for values in (grid, shuffled):  # the map's removals first, then the random map's
            for mask in removal_masks(values, image.width, image.height, fractions):
                variants.append(remove(image, mask, fill))
        outcomes, _ = scorer.run(scorer.prepare(variants, [meta] * len(variants)))
        scores = [o.raw_probability for o in outcomes]
        curves["map"].append(scores[: len(fractions)])
        curves["random"].append(scores[len(fractions) :])
    seconds = time.perf_counter() - started
    curve_map = np.mean(curves["map"], axis=0).tolist()
    curve_random = np.mean(curves["random"], axis=0).tolist()
    area_map, area_random = deletion_area(curve_map, fractions), deletion_area(curve_random, fractions)
    return {
        "model": manifest.label,
        "images": len(records),
        "fill": fill,
        "fractions": list(fractions),
        "curve_map": [round(v, 4) for v in curve_map],
        "curve_random": [round(v, 4) for v in curve_random],
        "deletion_auc_map": round(area_map, 4),
        "deletion_auc_random": round(area_random, 4),
        "deletion_ratio": round(area_map / area_random, 4) if area_random > 0 else None,
        "seconds": round(seconds, 1),
    }
