"""Datasets, splits and metrics (no TensorFlow needed)."""

import csv
import json

import numpy as np
import pytest
from PIL import Image

from training import evaluate as ev
from training.data import DatasetError, Split, load_dataset, make_split

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


def write_dataset(folder, n=40, *, size=40, bad=True):
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        malignant = i % 2
        pixels = rng.integers(0, 80 if malignant else 255, size=(size, size + 8, 3), dtype=np.uint8)
        name = f"images/IMG_{i:03d}.jpg"
        Image.fromarray(pixels).save(folder / name)
        rows.append(
            {
                "image_id": f"IMG_{i:03d}",
                "filename": name,
                "diagnosis": "mel" if malignant else "nv",
                "malignant": malignant,
                "age": "" if i % 7 == 0 else 30 + i,
                "sex": ["male", "female", ""][i % 3],
                "anatom_site": ["torso", "head/neck", ""][i % 3],
                "lesion_id": f"L{i // 2}",
                "source": "gen-a" if i < n // 2 else "gen-b",
            }
        )
    if bad:
        rows.append({**rows[0], "image_id": "MISSING", "filename": "images/missing.jpg"})
        (folder / "images" / "broken.jpg").write_bytes(b"not a jpeg")
        rows.append({**rows[0], "image_id": "BROKEN", "filename": "images/broken.jpg"})
        rows.append({**rows[0], "image_id": "ODDLABEL", "diagnosis": "xyz", "malignant": ""})
    with open(folder / "labels.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    return folder / "labels.csv"


def test_bad_rows_are_reported_with_line_numbers_and_skipped(tmp_path):
    dataset = load_dataset(write_dataset(tmp_path))
    assert len(dataset.records) == 40
    assert [b["line"] for b in dataset.bad_rows] == [42, 43, 44]
    assert "does not exist" in dataset.bad_rows[0]["error"]
    assert "unreadable" in dataset.bad_rows[1]["error"]
    assert "unknown label" in dataset.bad_rows[2]["error"]


def test_strict_makes_bad_rows_fatal(tmp_path):
    with pytest.raises(DatasetError, match="line 42"):
        load_dataset(write_dataset(tmp_path), strict=True)


def test_unknown_csv_format_is_a_clear_error(tmp_path):
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DatasetError, match="unknown columns"):
        load_dataset(tmp_path / "x.csv")


def test_siim_isic_2020_csv_is_read(tmp_path):
    (tmp_path / "jpeg" / "train").mkdir(parents=True)
    for name in ("ISIC_1", "ISIC_2"):
        Image.new("RGB", (20, 20), (120, 80, 60)).save(tmp_path / "jpeg" / "train" / f"{name}.jpg")
    (tmp_path / "train.csv").write_text(
        "image_name,patient_id,sex,age_approx,anatom_site_general_challenge,diagnosis,benign_malignant,target\n"
        "ISIC_1,IP_1,male,45.0,anterior torso,melanoma,malignant,1\n"
        "ISIC_2,IP_1,female,,lower extremity,nevus,benign,0\n"
    )
    dataset = load_dataset(tmp_path / "train.csv")
    assert [(r.label, r.site, r.group) for r in dataset.records] == [
        (1, "torso", "patient:IP_1"),
        (0, "lower extremity", "patient:IP_1"),
    ]


def test_split_keeps_lesions_together_and_is_saved(tmp_path):
    dataset = load_dataset(write_dataset(tmp_path, bad=False))
    split = make_split(dataset, k=4, fold=1, seed=3)
    train, val = split.apply(dataset)
    assert not {r.group for r in train.records} & {r.group for r in val.records}
    assert len(train.records) + len(val.records) == 40
    assert {r.malignant for r in val.records} == {0, 1}
    split.save(tmp_path / "split.json")
    assert Split.load(tmp_path / "split.json") == split
    assert json.loads((tmp_path / "split.json").read_text())["fold"] == 1


def test_metrics_on_known_scores():
    labels = np.array([0, 0, 1, 1, 0, 1])
    scores = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.9])
    assert ev.roc_auc(labels, scores) == pytest.approx(8 / 9)
    threshold = ev.threshold_for_sensitivity(labels, scores, 0.95)
    assert threshold == pytest.approx(0.35)
    metrics = ev.binary_metrics(labels, scores, threshold)
    assert metrics["sensitivity"] == 1.0
    assert metrics["specificity"] == pytest.approx(2 / 3)
    assert metrics["confusion_matrix"]["rows_true_cols_predicted"] == [[2, 1], [0, 3]]
    assert 0.0 <= metrics["ece"] <= 1.0
    assert ev.roc_auc(np.array([1, 1]), np.array([0.2, 0.3])) is None


def test_plots_are_written(tmp_path):
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 100)
    scores = np.clip(labels * 0.3 + rng.random(100) * 0.7, 0, 1)
    assert ev.save_plots(labels, scores, tmp_path, threshold=0.5) == ["roc.png", "reliability.png"]
    assert Image.open(tmp_path / "roc.png").size[0] > 100
