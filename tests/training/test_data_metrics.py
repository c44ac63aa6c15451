"""Datasets, splits and metrics (no TensorFlow needed)."""

import csv
import json

import numpy as np
import pytest
from PIL import Image

from training import evaluate as ev
from training.data import DatasetError, Split, extend_split, load_dataset, make_split

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


def test_exact_confidence_intervals_match_reference_values():
    # Clopper-Pearson intervals as R's binom.test gives them.
    assert ev.proportion_interval(8, 10) == pytest.approx([0.4439045, 0.9747893], abs=1e-6)
    assert ev.proportion_interval(0, 10) == pytest.approx([0.0, 0.3084971], abs=1e-6)
    assert ev.proportion_interval(10, 10) == pytest.approx([0.6915029, 1.0], abs=1e-6)
    assert ev.proportion_interval(0, 0) is None
    metrics = ev.binary_metrics(np.array([1] * 10 + [0] * 10), np.array([0.9] * 8 + [0.1] * 12), 0.5)
    assert metrics["sensitivity_ci95"] == pytest.approx([0.4439045, 0.9747893], abs=1e-6)
    assert metrics["specificity_ci95"] == pytest.approx([0.6915029, 1.0], abs=1e-6)


def test_a_confident_threshold_flags_the_fewest_positives_whose_lower_bound_reaches_the_target():
    rng = np.random.default_rng(5)
    labels = np.array([1] * 404 + [0] * 584)
    scores = np.concatenate([rng.uniform(0.2, 1.0, 404), rng.uniform(0.0, 0.7, 584)])
    point = ev.choose_threshold(labels, scores, 0.95)
    assert point["flagged"] == 384 and point["lower_bound"] is None
    rule = ev.choose_threshold(labels, scores, 0.95, confidence=0.95)
    flagged = rule["flagged"]
    assert rule["bound_met"] and rule["threshold"] < point["threshold"]
    assert (scores[labels == 1] >= rule["threshold"]).sum() == flagged
    assert (
        ev.proportion_lower_bound(flagged, 404, 0.95)
        >= 0.95
        > ev.proportion_lower_bound(flagged - 1, 404, 0.95)
    )
    assert rule["lower_bound"] == pytest.approx(ev.proportion_lower_bound(flagged, 404, 0.95))


def test_a_confident_threshold_keeps_the_target_sensitivity_on_new_patients():
    """Malignant scores uniform on [0, 1]: a threshold t has true sensitivity 1 - t. Chosen on 400 sampled
    positives, the point estimate falls short of 0.95 about half the time; the 95 % bound about 1 time in 20."""
    rng = np.random.default_rng(11)
    labels = np.ones(400, dtype=bool)
    short = {0.0: 0, 0.95: 0}
    for _ in range(400):
        scores = rng.uniform(0.0, 1.0, 400)
        for confidence in short:
            threshold = ev.threshold_for_sensitivity(labels, scores, 0.95, confidence)
            short[confidence] += (1.0 - threshold) < 0.95
    assert short[0.0] / 400 > 0.35
    assert short[0.95] / 400 < 0.09


def test_too_few_positives_for_the_bound_flag_them_all_and_say_so():
    labels = np.array([1, 1, 1, 0, 0])
    rule = ev.choose_threshold(labels, np.array([0.9, 0.6, 0.3, 0.2, 0.1]), 0.95, confidence=0.95)
    assert rule["threshold"] == 0.3 and rule["flagged"] == 3 and not rule["bound_met"]
    assert rule["lower_bound"] < 0.95
    with pytest.raises(ValueError, match="confidence"):
        ev.choose_threshold(labels, np.zeros(5), 0.95, confidence=1.0)


def test_reports_give_sensitivity_and_specificity_at_the_threshold_per_source_and_diagnosis(tmp_path):
    dataset = load_dataset(write_dataset(tmp_path, bad=False))  # 40 images: odd ones mel, even ones nv
    malignant = np.array([r.malignant for r in dataset.records])
    scores = np.where(malignant == 1, 0.8, 0.2)
    scores[1] = 0.1  # one missed melanoma in source gen-a (images 0-19)
    scores[2] = 0.9  # one flagged naevus in gen-a
    scores[24] = 0.9  # and one in gen-b
    groups = ev.full_report(dataset, scores, threshold=0.5)["subgroups"]
    assert groups["source"]["gen-a"] | {"auc": None} == {
        "n": 20,
        "positives": 10,
        "auc": None,
        "sensitivity": 0.9,
        "specificity": 0.9,
    }
    assert (groups["source"]["gen-b"]["sensitivity"], groups["source"]["gen-b"]["specificity"]) == (1.0, 0.9)
    assert groups["diagnosis"]["mel"]["sensitivity"] == pytest.approx(19 / 20)
    assert groups["diagnosis"]["mel"]["specificity"] is None and groups["diagnosis"]["mel"]["auc"] is None
    assert groups["diagnosis"]["nv"]["specificity"] == pytest.approx(18 / 20)
    assert "sensitivity" not in ev.subgroup_aucs(dataset, scores)["source"]["gen-a"]


def test_plots_are_written(tmp_path):
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 100)
    scores = np.clip(labels * 0.3 + rng.random(100) * 0.7, 0, 1)
    assert ev.save_plots(labels, scores, tmp_path, threshold=0.5) == ["roc.png", "reliability.png"]
    assert Image.open(tmp_path / "roc.png").size[0] > 100


def _second_csv(folder, shared_lesion: str):
    """A second labels CSV in its own folder: 12 lesions of another source, one of them (``shared_lesion``)
    also photographed in the first CSV, and one image id that the first CSV already uses."""
    (folder / "images").mkdir(parents=True)
    rng = np.random.default_rng(7)
    rows = []
    for i in range(24):
        malignant = i % 2
        name = f"images/B_{i:03d}.jpg"
        Image.fromarray(rng.integers(0, 255, size=(40, 48, 3), dtype=np.uint8)).save(folder / name)
        rows.append(
            {
                "image_id": f"B_{i:03d}",
                "filename": name,
                "diagnosis": "bcc" if malignant else "bkl",
                "malignant": malignant,
                "age": 50,
                "sex": "female",
                "anatom_site": "torso",
                "lesion_id": shared_lesion if i == 1 else f"B{i // 2}",
                "source": "gen-c",
            }
        )
    rows.append({**rows[0], "image_id": "IMG_000", "lesion_id": "B-dup"})  # an id the first CSV has
    with open(folder / "labels.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    return folder / "labels.csv"


def test_several_csvs_load_as_one_dataset_and_a_shared_lesion_stays_in_one_fold(tmp_path):
    first = write_dataset(tmp_path / "a", bad=False)
    second = _second_csv(tmp_path / "b", shared_lesion="L5")  # L5: IMG_010 and IMG_011 in the first CSV
    (tmp_path / "sets.txt").write_text("# both sets\na/labels.csv\n\nb/labels.csv\n")
    for data in ([first, second], tmp_path / "sets.txt"):
        dataset = load_dataset(data)
        assert len(dataset.records) == 40 + 24
        assert [b["image"] for b in dataset.bad_rows] == ["IMG_000"]
        assert "already listed" in dataset.bad_rows[0]["error"]
        assert dataset.bad_rows[0]["csv"].endswith("b/labels.csv")
        ids = {r.image_id: r for r in dataset.records}
        assert ids["B_001"].path.startswith(str(tmp_path / "b"))  # images resolve against their own CSV
        for seed in range(4):
            for fold in range(3):
                split = make_split(dataset, k=3, fold=fold, seed=seed)
                shared = {"IMG_010", "IMG_011", "B_001"}
                assert shared <= set(split.val) or not shared & set(split.val)
                train, val = split.apply(dataset)
                # stratified by label x source: every source has both labels on both sides
                for side in (train, val):
                    assert {(r.source, r.malignant) for r in side.records} == {
                        (s, m) for s in ("gen-a", "gen-b", "gen-c") for m in (0, 1)
                    }
    with pytest.raises(DatasetError, match="already listed"):
        load_dataset([first, second], strict=True)
    with pytest.raises(DatasetError, match="no such list file"):
        load_dataset(tmp_path / "missing.txt")


def test_extending_a_split_keeps_its_sides_and_splits_only_the_new_images_by_lesion(tmp_path):
    first = write_dataset(tmp_path / "a", bad=False)
    base = make_split(load_dataset(first), k=4, fold=0, seed=1)
    second = _second_csv(tmp_path / "b", shared_lesion="B-own")
    both = load_dataset([first, second])
    split = extend_split(base, both, k=3, fold=1, seed=2)
    assert set(base.train) <= set(split.train) and set(base.val) <= set(split.val)
    new_val = set(split.val) - set(base.val)
    assert new_val and new_val < {f"B_{i:03d}" for i in range(24)}
    assert len(split.train) + len(split.val) == 64
    groups = {r.image_id: r.group for r in both.records}
    assert not {groups[i] for i in split.train} & {groups[i] for i in split.val}
    # a lesion photographed in both sets, on the base's training side, cannot be split away from it
    train_lesion = next(r.group for r in load_dataset(first).records if r.image_id in base.train)
    clash = _second_csv(tmp_path / "c", shared_lesion=train_lesion)
    with pytest.raises(DatasetError, match="straddle"):
        for seed in range(6):  # some seed puts B_001 on the validation side
            extend_split(base, load_dataset([first, clash]), k=2, fold=0, seed=seed)
    with pytest.raises(DatasetError, match="no image"):
        extend_split(base, load_dataset(first))


def test_metadata_dropout_clears_fields_exactly_as_a_blank_would():
    from inference.preprocessing import metadata_vector
    from training.__main__ import build_parser
    from training.data import drop_metadata

    rows = np.stack([metadata_vector(age, sex, site) for age, sex, site in [(45, "female", "torso")] * 4000])
    rng = np.random.default_rng(0)
    assert drop_metadata(rows, 0.0, rng) is rows
    unknown = metadata_vector(None, None, None)
    assert np.array_equal(drop_metadata(rows, 0.9999999, rng), np.tile(unknown, (4000, 1)))
    dropped = drop_metadata(rows, 0.3, rng)
    age_gone = dropped[:, 1] == 1.0
    sex_gone = np.all(dropped[:, 2:5] == unknown[2:5], axis=1)
    assert 0.27 < age_gone.mean() < 0.33 and 0.27 < sex_gone.mean() < 0.33
    assert 0.05 < (age_gone & sex_gone).mean() < 0.13  # the fields drop independently
    kept = ~age_gone
    assert np.all(dropped[kept, 0] == rows[kept, 0])
    for row in dropped[:50]:  # every row is still a valid encoding: one flag or one value per field
        assert row[0:2].astype(bool).sum() == 1 and row[2:5].sum() == 1 and row[5:12].sum() == 1
    args = build_parser().parse_args(
        ["fit", "--data", "a.csv", "--run-dir", "r", "--metadata-dropout", "0.3"]
    )
    assert args.metadata_dropout == 0.3
