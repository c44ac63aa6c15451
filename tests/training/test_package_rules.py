"""``python -m training package`` on saved validation scores (no TensorFlow, no scoring run): calibration is
fitted and stored, the threshold is chosen on calibrated scores, and a threshold that leaves an age band with
>= 30 malignant images below 0.90 sensitivity is refused unless overridden."""

import csv
import json

import numpy as np
import pytest
from PIL import Image

from inference.package import read_manifest
from tests.support.onnx_models import build_package
from training.__main__ import main
from training.data import Split

FIELDS = [
    "image_id",
    "filename",
    "diagnosis",
    "malignant",
    "age",
    "sex",
    "anatom_site",
    "lesion_id",
    "source",
]


def _write_validation(tmp_path, rows: list[dict]) -> list[str]:
    """labels.csv with these rows and a split.json whose validation side is all of them; their ids."""
    with open(tmp_path / "labels.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    ids = [r["image_id"] for r in rows]
    Split(train=[], val=ids, fold=0, k=5, seed=0).save(tmp_path / "split.json")
    return ids


@pytest.fixture
def crafted(tmp_path):
    """200 validation images: 100 benign, 60 malignant aged 50-69, 40 malignant aged 30-49 of which 10 score
    lower than every other malignant image (the model's blind spot)."""
    (tmp_path / "images").mkdir()
    Image.new("RGB", (16, 16), (120, 90, 80)).save(tmp_path / "images" / "x.jpg")
    rng = np.random.default_rng(0)
    rows, scores = [], []
    for i in range(200):
        malignant = int(i >= 100)
        young = 100 <= i < 140
        rows.append(
            {
                "image_id": f"V{i:03d}",
                "filename": "images/x.jpg",
                "diagnosis": "mel" if malignant else "nv",
                "malignant": malignant,
                "age": 40 if young or i < 50 else 60,
                "sex": "female",
                "anatom_site": "torso",
                "lesion_id": f"L{i}",
                "source": "crafted",
            }
        )
        if not malignant:
            scores.append(rng.uniform(0.05, 0.6))
        elif young and i < 110:
            scores.append(rng.uniform(0.01, 0.04))  # the ten missed young melanomas
        else:
            scores.append(rng.uniform(0.7, 0.99))
    ids = _write_validation(tmp_path, rows)
    np.savez(tmp_path / "scores.npz", image_id=np.array(ids), probability=np.array(scores))
    source = build_package(tmp_path / "source", version="1.0.0")
    return tmp_path, source


def _package(tmp_path, source, *extra):
    return main(
        [
            "package",
            "--from-package",
            str(source),
            "--data",
            str(tmp_path / "labels.csv"),
            "--split",
            str(tmp_path / "split.json"),
            "--scores",
            str(tmp_path / "scores.npz"),
            "--out",
            str(tmp_path / "out"),
            "--version",
            "2.0.0",
            "--target-sensitivity",
            "0.90",
            "--sensitivity-confidence",
            "0",
            *extra,
        ]
    )


def test_a_threshold_with_an_age_band_below_the_floor_is_refused(crafted, capsys):
    tmp_path, source = crafted
    assert _package(tmp_path, source) == 2
    err = capsys.readouterr().err
    assert "age_band 30-49: sensitivity 0.750 on 40 malignant" in err
    assert "--allow-subgroup-shortfall" in err
    assert not (tmp_path / "out" / "manifest.json").exists()  # nothing that could be registered


def test_the_override_writes_the_package_with_a_loud_warning_and_records_it(crafted, capsys):
    tmp_path, source = crafted
    assert _package(tmp_path, source, "--allow-subgroup-shortfall") == 0
    assert "WARNING: age_band 30-49" in capsys.readouterr().err
    manifest, _ = read_manifest(tmp_path / "out")
    assert manifest.metrics["sensitivity_shortfalls"] == [
        {"group": "age_band", "value": "30-49", "positives": 40, "sensitivity": 0.75}
    ]
    assert "WARNING: subgroup check failed" in (tmp_path / "out" / "model_card.md").read_text()


def test_the_threshold_can_instead_be_lowered_until_every_age_band_keeps_the_floor(crafted, capsys):
    tmp_path, source = crafted
    # uncalibrated, so the counts are exact (an isotonic map would tie the ten low scores)
    assert _package(tmp_path, source, "--lower-threshold-for-subgroups", "--no-calibration") == 0
    assert "WARNING" not in capsys.readouterr().err
    manifest, _ = read_manifest(tmp_path / "out")
    scores = np.load(tmp_path / "scores.npz")["probability"]
    young, older = scores[100:140], scores[140:]
    assert (young >= manifest.threshold).sum() == 36  # ceil(0.90 * 40): the floor exactly, not more
    assert (older >= manifest.threshold).all()
    rule = manifest.metrics["threshold_rule"]
    lowered = {"group": "age_band", "value": "30-49", "positives": 40}
    assert rule["lowered_for"] == [{**lowered, "threshold": pytest.approx(manifest.threshold, abs=2e-6)}]
    assert rule["lowered_from"] > manifest.threshold
    assert rule["flagged"] == 96 and rule["sensitivity"] == pytest.approx(0.96)
    assert manifest.metrics["sensitivity_shortfalls"] == []
    assert manifest.metrics["age_band_sensitivity"]["30-49"] == pytest.approx(0.90)
    card = (tmp_path / "out" / "model_card.md").read_text()
    assert f"It was then lowered from {rule['lowered_from']:.4f}" in card
    assert "needed for: age band 30-49 (40 malignant)" in card
    assert "Subgroup check passed" in card
    # calibrated, the same option still leaves no band below the floor
    assert _package(tmp_path, source, "--lower-threshold-for-subgroups") == 0
    manifest, _ = read_manifest(tmp_path / "out")
    assert manifest.metrics["sensitivity_shortfalls"] == []
    assert manifest.metrics["age_band_sensitivity"]["30-49"] >= 0.90


def test_the_threshold_and_bands_are_chosen_on_calibrated_scores(crafted):
    tmp_path, source = crafted
    scores = np.load(tmp_path / "scores.npz")["probability"]
    scores[100:110] = 0.8  # no blind spot: the check passes
    np.savez(
        tmp_path / "scores.npz", image_id=np.load(tmp_path / "scores.npz")["image_id"], probability=scores
    )
    assert _package(tmp_path, source) == 0
    manifest, _ = read_manifest(tmp_path / "out")
    assert manifest.calibration is not None
    saved = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert saved["calibration"]["method"] in ("temperature", "platt", "isotonic")
    positives = np.sort(scores[100:])[::-1]
    raw_threshold = positives[89]  # 90 of 100 flagged
    assert manifest.threshold == pytest.approx(
        float(manifest.calibrate(np.array([raw_threshold]))[0]), abs=2e-6
    )
    calibrated = manifest.calibrate(scores)
    assert ((calibrated >= manifest.threshold) & (np.arange(200) >= 100)).sum() == 90
    assert manifest.metrics["sensitivity_shortfalls"] == []
    assert manifest.metrics["ece"] < manifest.metrics["ece_before_calibration"]
    card = (tmp_path / "out" / "model_card.md").read_text()
    assert "## Calibration" in card and "Subgroup check passed" in card
    assert "### metadata" in card and "| all present |" in card


def test_package_refuses_an_impossible_threshold_rule_before_exporting(tmp_path, capsys):
    from training.__main__ import main

    args = ["package", "--member", f"m0={tmp_path / 'no-run'}", "--out", str(tmp_path / "p")]
    assert main([*args, "--sensitivity-confidence", "1"]) == 2
    assert "--sensitivity-confidence must be in [0, 1)" in capsys.readouterr().err
    assert main([*args, "--target-sensitivity", "0"]) == 2
    assert "--target-sensitivity must be in (0, 1]" in capsys.readouterr().err
    assert main(["package", "--out", str(tmp_path / "p")]) == 2
    assert (
        "give --member NAME=RUN_DIR (repeatable), --from-package PACKAGE, or both" in capsys.readouterr().err
    )
    assert main([*args, "--drop-member", "m0"]) == 2
    assert "--drop-member names a member of --from-package's package" in capsys.readouterr().err
    rethreshold = ["package", "--from-package", str(tmp_path / "nope"), "--out", str(tmp_path / "p")]
    assert main([*rethreshold, "--version", "2"]) == 2
    assert "is not a model package" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()


def test_a_balanced_differential_names_rare_diagnoses_first_without_moving_the_risk(tmp_path, capsys):
    """A softmax that leans towards the common diagnoses (as one trained on naevi-heavy data does): the class
    weights chosen on validation raise the balanced accuracy, are stored in the manifest and the card, and the
    risk and threshold are the same as without them."""
    from tests.inference.members import DIFFERENTIAL_CLASSES, build_differential_package

    (tmp_path / "images").mkdir()
    Image.new("RGB", (16, 16), (120, 90, 80)).save(tmp_path / "images" / "x.jpg")
    counts = {"nv": 140, "bkl": 40, "mel": 60, "bcc": 20, "akiec": 14, "df": 12, "vasc": 12}
    prior = np.array([counts[c] for c in DIFFERENTIAL_CLASSES], dtype=float)
    prior /= prior.sum()
    rng = np.random.default_rng(1)
    rows, classes = [], []
    for diagnosis, n in counts.items():
        for _ in range(n):
            i = len(rows)
            signal = rng.normal(0.0, 1.0, len(prior))
            signal[DIFFERENTIAL_CLASSES.index(diagnosis)] += 1.6
            p = prior * np.exp(signal)
            classes.append(p / p.sum())
            malignant = int(diagnosis in ("mel", "bcc", "akiec"))
            row = {"image_id": f"D{i:03d}", "filename": "images/x.jpg", "diagnosis": diagnosis}
            row |= {"malignant": malignant, "age": 60, "sex": "male", "anatom_site": "torso"}
            rows.append(row | {"lesion_id": f"L{i}", "source": "crafted"})
    classes = np.array(classes)
    malignant_mask = np.array([c in ("mel", "bcc", "akiec") for c in DIFFERENTIAL_CLASSES])
    raw = classes[:, malignant_mask].sum(axis=1)
    ids = _write_validation(tmp_path, rows)
    np.savez(tmp_path / "scores.npz", image_id=np.array(ids), raw_probability=raw, classes=classes)
    source = build_differential_package(tmp_path / "source", version="1.0.0")
    results = {}
    for name, extra in (("plain", []), ("balanced", ["--balance-differential"])):
        args = ["package", "--from-package", str(source), "--data", str(tmp_path / "labels.csv")]
        args += ["--split", str(tmp_path / "split.json"), "--scores", str(tmp_path / "scores.npz")]
        args += ["--out", str(tmp_path / name), "--version", "2.0.0", "--allow-subgroup-shortfall", *extra]
        assert main(args) == 0, capsys.readouterr().err
        results[name] = read_manifest(tmp_path / name)[0]
    plain, balanced = results["plain"], results["balanced"]
    assert plain.differential.weights is None
    weights = dict(zip(DIFFERENTIAL_CLASSES, balanced.differential.weights, strict=True))
    assert weights["df"] > weights["bkl"] > weights["nv"]  # rarer on validation: weighted up
    assert balanced.threshold == plain.threshold and balanced.metrics["auc"] == plain.metrics["auc"]
    before, after = (m.metrics["balanced_accuracy"] for m in (plain, balanced))
    assert after > before + 0.05
    saved = np.load(tmp_path / "balanced" / "validation_scores.npz")
    np.testing.assert_allclose(
        saved["classes"][:, malignant_mask].sum(axis=1), saved["probability"], atol=1e-9
    )
    np.testing.assert_allclose(saved["classes"].sum(axis=1), 1.0, atol=1e-9)
    card = (tmp_path / "balanced" / "model_card.md").read_text()
    assert "**Balanced differential.**" in card and "cross-validated" in card
    assert "**Balanced differential.**" not in (tmp_path / "plain" / "model_card.md").read_text()
    # scripts/differential_balance.py on the plain package's saved scores makes the same choice
    import subprocess
    import sys

    script = [
        sys.executable,
        "scripts/differential_balance.py",
        str(tmp_path / "plain" / "validation_scores.npz"),
    ]
    script += ["--data", str(tmp_path / "labels.csv"), "--split", str(tmp_path / "split.json")]
    printed = json.loads(subprocess.run(script, capture_output=True, text=True, check=True).stdout)
    assert printed["weights"] == pytest.approx(weights)
