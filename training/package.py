"""Assemble trained members into an inference model package (``manifest.json`` + member ONNX files + model card),
choose the decision threshold on the validation split through the same ONNX path the workers use, and write the
metrics, plots and model card (Markdown + JSON) into the package."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from inference.package import Manifest, member_entry, write_manifest
from inference.preprocessing import ImageSpec
from training import evaluate as ev
from training.data import Split, load_dataset

LIMITATIONS = [
    "Trained and validated on low-resolution public dermoscopy images (HAM10000 200x150 px, ISIC 2017 256x256 px, "
    "ISIC UDA-1); performance on clinical (non-dermoscopic) photographs is unknown.",
    "Image size and style are tied to the source and partly to the label; all images are resized to one square "
    "input size, and AUC is reported per source so that a source shortcut would be visible.",
    "The class mix is enriched for malignancy (about 41%); predictive values do not transfer to a clinic's "
    "prevalence. The threshold targets sensitivity, not precision.",
    "Validation is one lesion-grouped split of the same sources; an independent test set is needed before "
    "any clinical claim. This is decision support for a dermatologist, never a diagnosis.",
]


def build_package(
    out: str | Path,
    members: list[dict],
    *,
    data: str,
    split: str | Path,
    name: str,
    version: str,
    target_sensitivity: float = 0.95,
    sensitivity_confidence: float = 0.95,
    tta: bool = True,
    training: dict | None = None,
) -> dict:
    """``members``: [{name, onnx (path), image_spec (dict), output, backbone, run_dir?, parity_max_abs_diff?}].

    Copies the ONNX files into ``out``, scores the validation side of ``split`` through
    ``inference.runtime`` with a provisional threshold, sets the threshold so that sensitivity reaches
    ``target_sensitivity`` with ``sensitivity_confidence`` (the exact lower confidence bound over the
    validation positives; 0: the point estimate, see ``training.evaluate.choose_threshold``), and writes
    manifest.json, model_card.md/.json, roc.png, reliability.png and validation_scores.npz."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for member in members:
        source = Path(member["onnx"])
        target = out / f"{member['name']}.onnx"
        if source.resolve() != target.resolve():
            shutil.copyfile(source, target)
        entries.append(
            member_entry(member["name"], target, ImageSpec.from_dict(member["image_spec"]), member["output"])
        )
    training = training or {}
    write_manifest(
        out,
        name=name,
        version=version,
        members=entries,
        threshold=0.5,
        risk_bands={"medium": 0.5, "high": 0.5},
        tta=tta,
        training=training,
        metrics={},
    )
    dataset = load_dataset(data, check_images=False)
    _, val = Split.load(split).apply(dataset)
    folder, manifest = ev.load_package(out)
    scores, member_scores = ev.score_dataset(val, folder, manifest)
    labels = np.array([r.malignant for r in val.records])
    threshold_rule = ev.choose_threshold(labels, scores, target_sensitivity, sensitivity_confidence)
    threshold = threshold_rule["threshold"]
    high = max(threshold, ev.threshold_for_specificity(labels, scores, 0.90))
    report = ev.full_report(val, scores, threshold)
    for member in members:
        member["val_auc"] = ev.roc_auc(labels, member_scores[member["name"]])
    headline = {
        k: report[k]
        for k in (
            "auc",
            "sensitivity",
            "specificity",
            "precision",
            "accuracy",
            "f1",
            "ece",
            "n",
            "positives",
            "threshold",
        )
    }
    headline["auc_per_source"] = {k: v["auc"] for k, v in report["subgroups"]["source"].items()}
    headline["member_auc"] = {m["name"]: m["val_auc"] for m in members}
    headline["threshold_rule"] = threshold_rule
    training = {
        **training,
        "validation_split": "lesion-grouped (lesion_id + near-duplicate hash), stratified "
        "by label and source",
        "n_val": len(val.records),
    }
    write_manifest(
        out,
        name=name,
        version=version,
        members=entries,
        threshold=threshold,
        risk_bands={"medium": threshold, "high": high},
        tta=tta,
        training=training,
        metrics=headline,
    )
    ev.save_plots(labels, scores, out, threshold=threshold, title=f"{name} {version}")
    np.savez_compressed(
        out / "validation_scores.npz",
        image_id=np.array([r.image_id for r in val.records]),
        probability=scores,
        label=labels,
        **{f"member_{k}": v for k, v in member_scores.items()},
    )
    card = {
        "name": name,
        "version": version,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "summary": (
            f"Ensemble of {len(members)} dual-input EfficientNet members (image + age/sex/site) for "
            "binary malignant-vs-benign triage of dermoscopic images; ONNX fp32, horizontal-flip TTA "
            f"{'on' if tta else 'off'}; probabilities are averaged."
        ),
        "intended_use": (
            "Decision support inside TeleDerm: flags cases for dermatologist review and orders "
            "the queue. It does not replace a dermatologist's diagnosis."
        ),
        "target_sensitivity": target_sensitivity,
        "threshold_rule": threshold_rule,
        "members": [
            {
                k: v
                for k, v in m.items()
                if k in ("name", "backbone", "val_auc", "parity_max_abs_diff", "recipe")
            }
            | {"image_size": m["image_spec"]["image_size"]}
            for m in members
        ],
        "validation": report,
        "risk_bands": {"medium": threshold, "high": high},
        "training": training,
        "limitations": LIMITATIONS,
    }
    (out / "model_card.json").write_text(json.dumps(card, indent=2))
    (out / "model_card.md").write_text(ev.model_card_markdown(card))
    return card


def members_from_package(folder: Path, manifest: Manifest) -> tuple[list[dict], dict, bool]:
    """The members, training record and TTA setting of an existing package (as ``ev.load_package`` returns
    it), in the form ``build_package`` takes: to choose its threshold again (another target, another
    confidence, more validation data) without retraining or re-exporting. The ONNX files are reused byte for
    byte."""
    card_path = folder / "model_card.json"
    card = json.loads(card_path.read_text()) if card_path.is_file() else {}
    described = {m.get("name"): m for m in card.get("members", [])}
    members = []
    for spec in manifest.members:
        known = described.get(spec.name, {})
        members.append(
            {
                "name": spec.name,
                "onnx": folder / spec.file,
                "image_spec": spec.image.to_dict(),
                "output": spec.output,
                "backbone": known.get("backbone", "unknown"),
                "recipe": known.get("recipe"),
                "parity_max_abs_diff": known.get("parity_max_abs_diff"),
            }
        )
    training = dict(manifest.training)
    for key in ("validation_split", "n_val"):  # build_package writes these for the new validation
        training.pop(key, None)
    return members, training, manifest.tta_hflip
