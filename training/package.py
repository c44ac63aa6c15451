"""Assemble trained members into an inference model package (``manifest.json`` + member ONNX files + model card),
choose the decision threshold on the validation split through the same ONNX path the workers use, and write the
metrics, plots and model card (Markdown + JSON) into the package."""

from __future__ import annotations

import json
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from inference.calibration import calibrated_differential
from inference.package import MANIFEST_NAME, Manifest, member_entry, sha256_file, write_manifest
from inference.preprocessing import ImageSpec
from training import evaluate as ev
from training.calibrate import choose_calibration, choose_differential_balance
from training.cam import with_cam
from training.data import HAM_CLASSES, MALIGNANT_DIAGNOSES, Split, load_dataset


class SubgroupShortfall(ValueError):
    """The threshold misses the sensitivity floor in an age band or source with enough malignant images."""


def find_class_output(onnx_file: Path, output: str) -> str | None:
    """The softmax tensor a diagnosis-supervised member sums into ``output`` (``training.model.positive_sum``:
    a MatMul of the seven-class softmax with the fixed malignant mask), or None when the graph is not built
    that way. The mask must be akiec + bcc + mel in HAM10000 order, so the class names are known."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(onnx_file)).graph
    producers = {o: n for n in graph.node for o in n.output}
    node = producers.get(output)
    if node is None or node.op_type != "MatMul" or len(node.input) != 2:
        return None
    source = producers.get(node.input[0])
    constants = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    mask = constants.get(node.input[1])
    expected = np.array([c in MALIGNANT_DIAGNOSES for c in HAM_CLASSES], dtype=np.float32)
    if source is None or source.op_type != "Softmax" or mask is None or mask.size != len(HAM_CLASSES):
        return None
    if not np.array_equal(mask.ravel().astype(np.float32), expected):
        return None
    return node.input[0]


def ham_differential() -> dict:
    """The manifest's ``differential`` for members whose ``classes`` output is the HAM10000 softmax."""
    return {
        "output": "classes",
        "classes": list(HAM_CLASSES),
        "malignant": [c for c in HAM_CLASSES if c in MALIGNANT_DIAGNOSES],
    }


def load_scores(path: str | Path, image_ids: list[str]) -> dict[str, np.ndarray]:
    """Validation scores saved earlier (``validation_scores.npz`` of a package, ``evaluate --out``'s
    ``scores.npz``), in the order of ``image_ids``; every id must be there. ``raw_probability`` is the
    uncalibrated ensemble probability (``probability`` for a package without calibration)."""
    data = np.load(path, allow_pickle=False)
    if "image_id" not in data or ("raw_probability" not in data and "probability" not in data):
        raise ValueError(f"{path}: a scores file needs image_id and raw_probability (or probability)")
    index = {str(i): k for k, i in enumerate(data["image_id"])}
    missing = [i for i in image_ids if i not in index]
    if missing:
        raise ValueError(f"{path} has no score for {len(missing)} validation images, e.g. {missing[:3]}")
    rows = np.array([index[i] for i in image_ids])
    raw = data["raw_probability"] if "raw_probability" in data else data["probability"]
    out = {"raw_probability": np.asarray(raw, dtype=np.float64)[rows]}
    for key in data.files:
        if key.startswith("member_") or key == "classes":
            out[key] = np.asarray(data[key], dtype=np.float64)[rows]
    return out


LIMITATIONS = [
    "Trained and validated on public dermoscopy images of 200 to 768 px from the archives listed under Data "
    "sources (HAM10000, ISIC 2017, ISIC UDA-1 and, with derm-extra, ISIC 2020, PH2 and derm7pt); performance on "
    "clinical (non-dermoscopic) photographs is unknown.",
    "Image size and style are tied to the source and partly to the label; all images are resized to one square "
    "input size, and AUC is reported per source so that a source shortcut would be visible.",
    "The class mix is enriched for malignancy (19-41% depending on the data used); predictive values do not "
    "transfer to a clinic's prevalence. The threshold targets sensitivity, not precision.",
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
    differential: dict | None = None,
    calibrate: bool = True,
    scores: str | Path | None = None,
    allow_subgroup_shortfall: bool = False,
    lower_threshold_for_subgroups: bool = False,
    balance_differential: bool = False,
    card_sections: list[dict] | None = None,
) -> dict:
    """``members``: [{name, onnx (path), image_spec (dict), output, backbone, run_dir?, parity_max_abs_diff?}].

    Copies the ONNX files into ``out``, scores the validation side of ``split`` through
    ``inference.runtime`` with a provisional threshold, sets the threshold so that sensitivity reaches
    ``target_sensitivity`` with ``sensitivity_confidence`` (the exact lower confidence bound over the
    validation positives; 0: the point estimate, see ``training.evaluate.choose_threshold``), and writes
    manifest.json, model_card.md/.json, roc.png, reliability.png and validation_scores.npz.

    Member dicts may carry ``outputs`` ({key: tensor}) and ``differential`` the manifest's differential entry.
    ``card_sections``: [{title, markdown}] printed in the model card (measurements made outside the package).
    ``calibrate``: fit the calibration map on the validation scores (``training.calibrate``) and choose the
    threshold and risk bands on the calibrated scores. ``scores``: reuse saved validation scores of these same
    members instead of running them. The threshold must keep sensitivity >= 0.90 in every age band and source
    with >= 30 malignant validation images; otherwise :class:`SubgroupShortfall` is raised and no manifest is
    left behind, unless ``allow_subgroup_shortfall`` (then the shortfall is printed, and recorded in the
    manifest's metrics and the model card). ``lower_threshold_for_subgroups``: instead, lower the threshold
    until every such group reaches the floor (``training.metrics.threshold_for_group_floors``; the groups that
    needed it and the threshold before are recorded in ``threshold_rule`` and printed in the model card).
    ``balance_differential``: store class weights in the differential (``training.calibrate.
    choose_differential_balance``: the balanced accuracy they give, in sample and cross-validated, goes into
    the model card); the risk is unchanged."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for member in members:
        source = Path(member["onnx"])
        target = out / f"{member['name']}.onnx"
        if source.resolve() != target.resolve():
            shutil.copyfile(source, target)
        outputs = with_cam(target, member["output"], member.get("outputs"))
        entries.append(
            member_entry(
                member["name"],
                target,
                ImageSpec.from_dict(member["image_spec"]),
                member["output"],
                outputs=outputs,
            )
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
        differential=differential,
    )
    dataset = load_dataset(data, check_images=False)
    _, val = Split.load(split).apply(dataset)
    folder, manifest = ev.load_package(out)
    if scores is not None:
        scored = load_scores(scores, [r.image_id for r in val.records])
    else:
        scored = ev.score_records(val, folder, manifest)
    raw = scored["raw_probability"]
    member_scores = {k[len("member_") :]: v for k, v in scored.items() if k.startswith("member_")}
    labels = np.array([r.malignant for r in val.records])
    calibration, calibration_record = None, None
    scores_used, classes = raw, scored.get("classes")
    if calibrate:
        calibration, calibration_record = choose_calibration(labels, raw, [r.group for r in val.records])
        scores_used = calibration.apply(raw)
    balance = None
    if classes is not None and differential is not None and (calibrate or balance_differential):
        mask = np.array([c in differential["malignant"] for c in differential["classes"]])
        weights = None
        if balance_differential:
            balance = choose_differential_balance(
                [r.diagnosis or "" for r in val.records],
                classes,
                list(differential["classes"]),
                mask,
                scores_used,
                [r.group for r in val.records],
            )
            differential = {**differential, "weights": balance["weights"]}
            weights = np.array([balance["weights"][c] for c in differential["classes"]])
        classes = calibrated_differential(classes, mask, scores_used, weights)
    threshold_rule = ev.choose_threshold(labels, scores_used, target_sensitivity, sensitivity_confidence)
    threshold = threshold_rule["threshold"]
    if lower_threshold_for_subgroups:
        lowered = ev.threshold_for_group_floors(
            {
                "age_band": [ev.age_band(r.age) for r in val.records],
                "source": [r.source for r in val.records],
            },
            labels,
            scores_used,
            threshold,
        )
        if lowered["lowered_for"]:
            flagged = int((scores_used[labels.astype(bool)] >= lowered["threshold"]).sum())
            threshold_rule = {
                **threshold_rule,
                "threshold": lowered["threshold"],
                "flagged": flagged,
                "sensitivity": flagged / threshold_rule["positives"],
                "lower_bound": (
                    ev.proportion_lower_bound(flagged, threshold_rule["positives"], sensitivity_confidence)
                    if sensitivity_confidence > 0
                    else None
                ),
                "lowered_from": lowered["lowered_from"],
                "lowered_for": lowered["lowered_for"],
            }
            threshold = lowered["threshold"]
    high = max(threshold, ev.threshold_for_specificity(labels, scores_used, 0.90))
    report = ev.full_report(
        val,
        scores_used,
        threshold,
        raw_scores=raw,
        classes=classes,
        class_names=differential["classes"] if differential else None,
    )
    shortfalls = report["sensitivity_shortfalls"]
    if shortfalls:
        text = "; ".join(
            f"{s['group']} {s['value']}: sensitivity {s['sensitivity']:.3f} on {s['positives']} malignant"
            for s in shortfalls
        )
        if not allow_subgroup_shortfall:
            (out / MANIFEST_NAME).unlink(missing_ok=True)  # nothing half-made can be registered
            raise SubgroupShortfall(
                f"threshold {threshold:.4f} keeps sensitivity below {ev.GROUP_SENSITIVITY_FLOOR:.2f} in a group "
                f"with >= {ev.MIN_GROUP_POSITIVES} malignant validation images ({text}); no package was written. "
                "Fix the model, or pass --allow-subgroup-shortfall to write it anyway (recorded in the model card)"
            )
        print(
            f"WARNING: {text}: below the {ev.GROUP_SENSITIVITY_FLOOR:.2f} floor; written anyway",
            file=sys.stderr,
        )
    for member in members:
        if member["name"] in member_scores:
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
            "ece_before_calibration",
            "melanoma_sensitivity",
            "age_band_sensitivity",
            "balanced_accuracy",
            "n",
            "positives",
            "threshold",
        )
    }
    headline["auc_per_source"] = {k: v["auc"] for k, v in report["subgroups"]["source"].items()}
    headline["member_auc"] = {m["name"]: m.get("val_auc") for m in members}
    headline["threshold_rule"] = threshold_rule
    headline["sensitivity_shortfalls"] = shortfalls
    if calibration_record:
        headline["calibration"] = calibration_record
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
        calibration=calibration.to_dict() if calibration else None,
        differential=differential,
    )
    ev.save_plots(labels, scores_used, out, threshold=threshold, title=f"{name} {version}", raw_scores=raw)
    extra = {"classes": classes} if classes is not None else {}
    np.savez_compressed(
        out / "validation_scores.npz",
        image_id=np.array([r.image_id for r in val.records]),
        probability=scores_used,
        raw_probability=raw,
        label=labels,
        **extra,
        **{f"member_{k}": v for k, v in member_scores.items()},
    )
    card = {
        "name": name,
        "version": version,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "summary": (
            f"Ensemble of {len(members)} dual-input EfficientNet members (image + age/sex/site) for "
            "binary malignant-vs-benign triage of dermoscopic images; ONNX fp32, horizontal-flip TTA "
            f"{'on' if tta else 'off'}; probabilities are averaged"
            + (f", then calibrated ({calibration.method})" if calibration else "")
            + ("; with a seven-class differential (the members' diagnosis softmax)." if differential else ".")
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
        "calibration": calibration_record,
        "calibration_map": calibration.to_dict() if calibration else None,
        "differential": differential,
        "differential_balance": balance,
        "sensitivity_shortfalls": shortfalls,
        "scores_file": {"path": str(scores), "sha256": sha256_file(Path(scores))} if scores else None,
        "data_sources": data_sources(data),
        "extra_sections": card_sections or [],
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
                "outputs": dict(spec.outputs),
                "backbone": known.get("backbone", "unknown"),
                "recipe": known.get("recipe"),
                "parity_max_abs_diff": known.get("parity_max_abs_diff"),
            }
        )
    training = dict(manifest.training)
    for key in ("validation_split", "n_val"):  # build_package writes these for the new validation
        training.pop(key, None)
    return members, training, manifest.tta_hflip


def data_sources(data) -> list[dict]:
    """For each data CSV, the licences section of the SOURCES.md beside it (the model card lists every data
    source and its licence): the "## ... licences ..." section up to the next "## " heading."""
    from training.data import data_files

    out = []
    for csv_file in data_files(data):
        sources = Path(csv_file).parent / "SOURCES.md"
        section: list[str] = []
        if sources.is_file():
            inside = False
            for line in sources.read_text(encoding="utf-8").splitlines():
                if line.startswith("## "):
                    inside = "licen" in line.lower()
                    continue
                if inside:
                    section.append(line)
        out.append({"csv": str(csv_file), "licences": "\n".join(section).strip() or None})
    return out


def card_section(path: str | Path) -> dict:
    """A Markdown file as a model card section: its first line (without leading '#') is the title."""
    text = Path(path).read_text(encoding="utf-8")
    first, _, rest = text.partition("\n")
    return {"title": first.lstrip("#").strip(), "markdown": rest.strip()}
