"""``python -m training evaluate --json`` on a calibrated package with a differential (no TensorFlow)."""

import json

import numpy as np
import pytest

from tests.inference.members import DIFFERENTIAL_CLASSES, build_differential_package
from tests.training.test_data_metrics import write_dataset
from training import evaluate as ev
from training.__main__ import main


@pytest.fixture
def scored(tmp_path, capsys):
    data = write_dataset(tmp_path / "data", n=40, bad=False)
    package = build_differential_package(
        tmp_path / "pkg", calibration={"method": "platt", "slope": 0.5, "intercept": 0.2}
    )

    def run(*extra):
        assert main(["evaluate", "--data", str(data), "--model", str(package), "--json", *extra]) == 0
        return json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    return run


def test_evaluate_reports_the_new_keys(scored):
    report = scored()
    assert report["calibrated"] is True and report["metadata_masked"] is False
    assert 0.0 <= report["melanoma_sensitivity"] <= 1.0
    assert set(report["age_band_sensitivity"]) <= {"<30", "30-49", "50-69", "70+", "unknown"}
    assert report["age_band_sensitivity"]["30-49"] == report["subgroups"]["age_band"]["30-49"]["sensitivity"]
    assert report["ece_before_calibration"] != report["ece"]  # the map moved the probabilities
    assert report["multiclass"]["implementation"] in (
        "isic-challenge-scoring",
        "training.evaluate (same formula)",
    )
    assert 0.0 <= report["balanced_accuracy"] <= 1.0
    # the generated rows cover three metadata patterns (see write_dataset)
    assert {"all present", "all missing", "partly missing"} <= set(report["missingness"])
    for row in report["missingness"].values():
        assert {"n", "positives", "auc", "sensitivity", "specificity"} <= set(row)
    assert "reliability" not in report


def test_masking_the_metadata_changes_the_scores(scored):
    with_metadata, masked = scored(), scored("--mask-metadata")
    assert masked["metadata_masked"] is True
    assert masked["auc"] != with_metadata["auc"] or masked["ece"] != with_metadata["ece"]


def test_balanced_accuracy_is_the_mean_recall_over_the_classes_present():
    diagnoses = ["mel", "mel", "nv", "nv", "nv", "bcc", "scc"]  # scc is not one of the classes: left out
    predicted = np.full((7, 7), 0.01)
    for row, winner in enumerate(["mel", "nv", "nv", "nv", "mel", "bcc", "mel"]):
        predicted[row, DIFFERENTIAL_CLASSES.index(winner)] = 0.9
    result = ev.balanced_accuracy(diagnoses, predicted, DIFFERENTIAL_CLASSES)
    assert result["n"] == 6
    assert result["balanced_accuracy"] == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)


def test_the_text_report_names_the_new_figures(tmp_path, capsys):
    data = write_dataset(tmp_path / "data", n=40, bad=False)
    package = build_differential_package(tmp_path / "pkg")
    assert main(["evaluate", "--data", str(data), "--model", str(package)]) == 0
    out = capsys.readouterr().out
    assert "balanced accuracy (7 classes)" in out and "age 30-49: sensitivity" in out
    assert "metadata all present" in out
