"""The model card (Markdown) from the card dictionary ``training.package.build_package`` writes as JSON."""

from __future__ import annotations

import json

from training.metrics import GROUP_SENSITIVITY_FLOOR, MIN_GROUP_POSITIVES


def _fmt(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.1e}" if 0 < abs(value) < 1e-3 else f"{value:.3f}"
    return str(value)


def threshold_sentence(rule: dict | None, threshold: float, target: float) -> str:
    """How the decision threshold was chosen, in one sentence for the model card (two when it was lowered so
    that every age band and source keeps the sensitivity floor)."""
    if rule and rule.get("lowered_for"):
        groups = ", ".join(
            f"{g['group'].replace('_', ' ')} {g['value']} ({g['positives']} malignant)"
            for g in rule["lowered_for"]
        )
        base = {k: v for k, v in rule.items() if k not in ("lowered_for", "lowered_from")}
        return (
            threshold_sentence(base, threshold, target)
            + f" It was then lowered from {rule['lowered_from']:.4f} so that every age band and source with "
            f">= {MIN_GROUP_POSITIVES} malignant validation images keeps sensitivity >= "
            f"{GROUP_SENSITIVITY_FLOOR:.2f}; needed for: {groups}."
        )
    if not rule or not rule.get("confidence"):
        return f"Decision threshold {threshold:.4f}, chosen on this validation split for sensitivity >= {target:.2f}."
    flagged = f"it flags {rule['flagged']} of the {rule['positives']} malignant validation images"
    if rule["bound_met"]:
        return (
            f"Decision threshold {threshold:.4f}, chosen on this validation split so that sensitivity >= "
            f"{target:.2f} holds with {rule['confidence']:.0%} confidence: {flagged} "
            f"({rule['sensitivity']:.3f}; exact one-sided lower bound {rule['lower_bound']:.3f}). A threshold "
            f"that flags exactly {target:.0%} of them would fall short of {target:.0%} on new patients about "
            "half the time."
        )
    return (
        f"Decision threshold {threshold:.4f}: {flagged}, and still the lower {rule['confidence']:.0%} "
        f"confidence bound of sensitivity is only {rule['lower_bound']:.3f}, below the target "
        f"{target:.2f}: validate on more malignant cases before relying on it."
    )


def _calibration_lines(card: dict) -> list[str]:
    record, m = card.get("calibration"), card["validation"]
    if not record:
        return ["Probabilities are not calibrated (the package has no calibration map).", ""]
    lines = [
        "## Calibration",
        "",
        f"The served probability is the ensemble's probability passed through a **{record['chosen']}** map "
        "fitted on this validation split (`calibration` in the manifest, applied by the workers): "
        f"ECE {_fmt(record['ece_before'])} before, {_fmt(m['ece'])} after (in sample; cross-validated "
        f"{_fmt(record['by_method'][record['chosen']]['ece_cv'])}). The map was chosen by "
        f"{record['cross_validation']} cross-validation on this split:",
        "",
        "| map | ECE (cross-validated) | log loss (cross-validated) |",
        "|---|---|---|",
    ]
    for method, row in record["by_method"].items():
        lines.append(f"| {method} | {_fmt(row['ece_cv'])} | {_fmt(row['log_loss_cv'])} |")
    before = m.get("reliability_before_calibration") or []
    lines += [
        "",
        "Reliability (10 bins of the predicted probability): mean predicted / observed malignant rate (n).",
        "",
        "| bin | before calibration | after calibration |",
        "|---|---|---|",
    ]
    for b_before, b_after in zip(before, m.get("reliability") or [], strict=False):

        def cell(b: dict) -> str:
            if not b["n"]:
                return "-"
            return f"{b['mean_probability']:.3f} / {b['observed_rate']:.3f} ({b['n']})"

        lines.append(
            f"| {b_after['bin'][0]:.1f}-{b_after['bin'][1]:.1f} | {cell(b_before)} | {cell(b_after)} |"
        )
    lines += [
        "",
        "The map is fitted to this validation mix (about 41 % malignant). At a clinic's lower prevalence the "
        "calibrated probability overstates the risk; the threshold and the review order are unaffected (the "
        "map is monotone).",
        "",
    ]
    return lines


def _shortfall_lines(card: dict) -> list[str]:
    shortfalls = card.get("sensitivity_shortfalls")
    if shortfalls is None:
        return []
    if not shortfalls:
        return [
            f"**Subgroup check passed:** every age band and source with >= {MIN_GROUP_POSITIVES} malignant "
            f"validation images keeps sensitivity >= {GROUP_SENSITIVITY_FLOOR:.2f} at the threshold.",
            "",
        ]
    lines = [
        f"**WARNING: subgroup check failed and was overridden.** Sensitivity below "
        f"{GROUP_SENSITIVITY_FLOOR:.2f} at the threshold in:",
        "",
    ]
    lines += [
        f"- {s['group']} {s['value']}: {s['sensitivity']:.3f} ({s['positives']} malignant)"
        for s in shortfalls
    ]
    return lines + [""]


def _differential_lines(card: dict) -> list[str]:
    m = card["validation"]
    multiclass = m.get("multiclass")
    if not card.get("differential") or not multiclass:
        return []
    lines = [
        "## Seven-class differential",
        "",
        "Every member's softmax over the seven HAM10000 diagnoses is exposed as its `classes` output, averaged "
        "with the member weights and rescaled so that akiec + bcc + mel equals the calibrated risk. Balanced "
        f"multiclass accuracy (ISIC 2018 Task 3 metric, computed with {multiclass['implementation']}) on the "
        f"{multiclass['n']} validation images: **{_fmt(multiclass['balanced_accuracy'])}**.",
        "",
        "| diagnosis | recall (top-1) |",
        "|---|---|",
    ]
    lines += [f"| {c} | {_fmt(r)} |" for c, r in multiclass["recall_per_class"].items()]
    balance = card.get("differential_balance")
    if balance:
        weights = ", ".join(f"{c} {w:.3g}" for c, w in balance["weights"].items())
        lines += [
            "",
            "**Balanced differential.** Within the malignant and within the benign share, each diagnosis is "
            "weighted by (its validation frequency) ^ -s with s = "
            f"{balance['strength']:g} ({weights}; `differential.weights` in the manifest), so that a rare "
            "diagnosis the image supports is not always outvoted by naevi; the risk and the threshold do not "
            f"change. Balanced accuracy {_fmt(balance['balanced_accuracy_before'])} without the weights, "
            f"{_fmt(balance['balanced_accuracy_after'])} with them (in sample), "
            f"{_fmt(balance['balanced_accuracy_cv'])} cross-validated ({balance['cross_validation']}). The "
            "shares within each side are then no longer calibrated frequencies: they rank the diagnoses.",
        ]
    return lines + [""]


def _extra_lines(card: dict) -> list[str]:
    """Free-form sections the packager adds (``card["extra_sections"]``: [{title, markdown}])."""
    lines = []
    for section in card.get("extra_sections") or []:
        lines += [f"## {section['title']}", "", section["markdown"].rstrip(), ""]
    return lines


def _source_lines(card: dict) -> list[str]:
    sources = card.get("data_sources")
    if not sources:
        return []
    lines = ["## Data sources and licences", ""]
    for source in sources:
        lines += [
            f"From `{source['csv']}` (its SOURCES.md):",
            "",
            source.get("licences") or "(no SOURCES.md)",
            "",
        ]
    return lines


def model_card_markdown(card: dict) -> str:
    """The Markdown model card from the card dictionary (also written as JSON)."""
    m = card["validation"]
    lines = [
        f"# Model card: {card['name']} {card['version']}",
        "",
        card.get("summary", ""),
        "",
        "## Intended use",
        "",
        card.get("intended_use", ""),
        "",
        "## Members",
        "",
        "| member | backbone | input | training | validation AUC | ONNX parity (max abs diff) |",
        "|---|---|---|---|---|---|",
    ]
    for member in card["members"]:
        lines.append(
            f"| {member['name']} | {member['backbone']} | {member['image_size']} px | "
            f"{member.get('recipe') or '-'} | "
            f"{_fmt(member.get('val_auc'))} | {_fmt(member.get('parity_max_abs_diff'))} |"
        )
    lines += [
        "",
        f"## Validation ({m['n']} images, {m['positives']} malignant; lesion-grouped split)",
        "",
        threshold_sentence(card.get("threshold_rule"), m["threshold"], card["target_sensitivity"]),
        "",
        "| metric | value |",
        "|---|---|",
    ]
    for key in (
        "auc",
        "sensitivity",
        "specificity",
        "precision",
        "accuracy",
        "f1",
        "ece",
        "ece_before_calibration",
        "melanoma_sensitivity",
        "balanced_accuracy",
    ):
        if key not in m:
            continue
        interval = m.get(f"{key}_ci95")
        suffix = f" (95% CI {interval[0]:.3f}-{interval[1]:.3f})" if interval else ""
        lines.append(f"| {key} | {_fmt(m[key])}{suffix} |")
    cm = m["confusion_matrix"]["rows_true_cols_predicted"]
    lines += [
        "",
        "Confusion matrix (rows: truth, columns: prediction): "
        f"benign {cm[0][0]} / {cm[0][1]}, malignant {cm[1][0]} / {cm[1][1]}.",
        "",
        "![ROC](roc.png) ![Reliability](reliability.png)",
        "",
    ]
    lines += _calibration_lines(card)
    lines += _shortfall_lines(card)
    lines += [
        "## Per source and subgroup (sensitivity and specificity at the decision threshold)",
        "",
        "`metadata`: which of age, sex and site the image came with (all present / age missing / partly "
        "missing / all missing).",
        "",
    ]
    for group, values in m["subgroups"].items():
        lines += [
            f"### {group}",
            "",
            "| value | n | malignant | AUC | sensitivity | specificity |",
            "|---|---|---|---|---|---|",
        ]
        for value, row in values.items():
            lines.append(
                f"| {value} | {row['n']} | {row['positives']} | {_fmt(row['auc'])} | "
                f"{_fmt(row.get('sensitivity'))} | {_fmt(row.get('specificity'))} |"
            )
        lines.append("")
    lines += []
    lines += _differential_lines(card)
    lines += _extra_lines(card)
    lines += _source_lines(card)
    lines += [
        "## Training",
        "",
        "```json",
        json.dumps(card.get("training", {}), indent=2),
        "```",
        "",
        "## Limitations",
        "",
    ]
    lines += [f"- {item}" for item in card.get("limitations", [])]
    return "\n".join(lines) + "\n"
