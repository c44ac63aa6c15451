"""Evaluation: scoring a CSV with a model package through ``inference.runtime.Ensemble`` (the path the workers use),
the report and its ROC / reliability PNGs. The metrics live in ``training.metrics`` and the model card in
``training.model_card``; their names are re-exported here, so ``training.evaluate`` stays the one entry point.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from training.data import Dataset, load_dataset
from training.metrics import (
    GROUP_SENSITIVITY_FLOOR,
    MIN_GROUP_POSITIVES,
    age_band,
    balanced_accuracy,
    binary_metrics,
    binomial_upper_tail,
    choose_threshold,
    expected_calibration_error,
    full_report,
    metadata_pattern,
    proportion_interval,
    proportion_lower_bound,
    reliability,
    roc_auc,
    roc_curve,
    sensitivity_shortfalls,
    subgroup_aucs,
    threshold_for_group_floors,
    threshold_for_sensitivity,
    threshold_for_specificity,
)
from training.model_card import model_card_markdown, threshold_sentence

__all__ = [
    "roc_auc",
    "roc_curve",
    "binomial_upper_tail",
    "proportion_lower_bound",
    "proportion_interval",
    "choose_threshold",
    "threshold_for_sensitivity",
    "threshold_for_specificity",
    "expected_calibration_error",
    "reliability",
    "binary_metrics",
    "age_band",
    "metadata_pattern",
    "subgroup_aucs",
    "threshold_for_group_floors",
    "MIN_GROUP_POSITIVES",
    "GROUP_SENSITIVITY_FLOOR",
    "sensitivity_shortfalls",
    "balanced_accuracy",
    "full_report",
    "model_card_markdown",
    "threshold_sentence",
    "save_plots",
    "load_package",
    "score_records",
    "score_dataset",
    "evaluate_csv",
]


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
    from inference.archive import extract_zip
    from inference.package import read_manifest

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

    ensemble = Ensemble(folder, manifest, RuntimeConfig(providers=(CPU,)), heatmaps=False)  # scores only
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
