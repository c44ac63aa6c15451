"""``python -m training evaluate-explanations``: the deletion test of the heatmaps and the retrieval check of
the similar-lesion embedding, on a tiny CAM package (tests.inference.members) whose malignant score follows
red pixels. No TensorFlow."""

import csv
import json

import numpy as np
import pytest
from PIL import Image

from learning.services import EXPORT_COLUMNS
from tests.inference.members import build_cam_package
from training.__main__ import main


def lesions(folder, prefix: str, n: int = 24, seed: int = 0):
    """Malignant images carry a red square at a random place; benign ones are grey with noise."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        malignant = i % 2
        pixels = rng.integers(100, 150, size=(64, 64, 3)).astype(np.uint8)
        if malignant:
            y, x = rng.integers(0, 40, size=2)
            pixels[y : y + 24, x : x + 24] = (230, 20, 20)
        name = f"images/{prefix}{i:03d}.png"
        Image.fromarray(pixels).save(folder / name)
        rows.append(
            {
                "image_id": f"{prefix}{i:03d}",
                "filename": name,
                "diagnosis": "mel" if malignant else "nv",
                "malignant": malignant,
                "age": 50,
                "sex": "female",
                "anatom_site": "torso",
                "lesion_id": f"{prefix}L{i}",
                "source": "generated",
            }
        )
    with open(folder / "labels.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=EXPORT_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return folder / "labels.csv"


def package_with_features(tmp_path, *, cam: bool = True):
    folder = build_cam_package(tmp_path / ("pkg" if cam else "plain"), cam=cam)
    manifest = json.loads((folder / "manifest.json").read_text())
    for member in manifest["members"]:
        member["outputs"]["features"] = "pooled"  # the pooled features the similar-lesion search embeds
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_the_map_removes_the_score_faster_than_random_pixels_and_retrieval_finds_the_same_kind(
    tmp_path, capsys
):
    package = package_with_features(tmp_path)
    queries = lesions(tmp_path / "queries", "Q", seed=1)
    references = lesions(tmp_path / "refs", "R", n=40, seed=2)
    args = ["evaluate-explanations", "--data", str(queries), "--model", str(package), "--limit", "8"]
    assert main([*args, "--reference", str(references), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["deletion_auc_map"] < result["deletion_auc_random"]
    ratio = result["deletion_auc_map"] / result["deletion_auc_random"]
    assert result["deletion_ratio"] == pytest.approx(ratio, abs=1e-3)
    assert result["retrieval_precision_at_5"] >= 0.8
    assert result["references"] == 40 and result["retrieval_queries"] == 24
    assert result["retrieval_ms_p95"] >= 0.0
    # without --reference the retrieval figures are not printed (nothing unmeasured is reported)
    assert main(args + ["--json"]) == 0
    assert "retrieval_precision_at_5" not in json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_clear_errors_for_a_package_without_a_map_or_without_features(tmp_path, capsys):
    queries = lesions(tmp_path / "queries", "Q")
    plain = package_with_features(tmp_path, cam=False)
    assert main(["evaluate-explanations", "--data", str(queries), "--model", str(plain)]) == 2
    assert "produces no heatmap: add one with python -m training add-cam" in capsys.readouterr().err
    package = build_cam_package(tmp_path / "nofeatures")
    args = ["evaluate-explanations", "--data", str(queries), "--model", str(package), "--limit", "2"]
    assert main([*args, "--reference", str(queries)]) == 2  # every reference is also a query
    assert "reference images that are not queries" in capsys.readouterr().err
    references = lesions(tmp_path / "refs", "R", n=6)
    assert main([*args, "--reference", str(references)]) == 2
    assert "declares no pooled features: there is nothing to retrieve with" in capsys.readouterr().err
