"""The manifest parser and package file checks refuse what is wrong and name it."""

import copy
import json
import zipfile

import numpy as np
import pytest

from inference.archive import extract_zip
from inference.package import PackageError, parse_manifest, read_manifest, verify_files
from tests.support.onnx_models import build_package


@pytest.fixture
def manifest_data(package):
    return json.loads((package / "manifest.json").read_text())


def test_a_built_package_parses_with_every_field(package):
    manifest, sha = read_manifest(package)
    assert manifest.label == "test-ensemble 1.0.0"
    assert manifest.task == "binary"
    assert [m.name for m in manifest.members] == ["member0", "member1"]
    assert manifest.members[0].image.size == 32
    assert manifest.members[0].metadata_input == "metadata"
    assert manifest.metadata.size == 12  # age, age missing, 2 sexes + missing, 6 sites + missing
    assert manifest.risk_bands == {"medium": 0.3, "high": 0.7}
    assert manifest.tta_hflip is False
    assert len(sha) == 64
    verify_files(package, manifest)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.pop("members"), "'members' is missing"),
        (lambda m: m.update(members=[]), "lists no ONNX files"),
        (lambda m: m.update(format_version=9), "format_version 9 is not supported"),
        (lambda m: m.update(task="segmentation"), "task must be one of"),
        (lambda m: m.update(threshold=1.5), "threshold must be within [0, 1]"),
        (lambda m: m.update(threshold="high"), "threshold must be a number"),
        (lambda m: m.update(risk_bands={"medium": 0.9, "high": 0.5}), "medium must not be above"),
        (lambda m: m.update(name="../etc"), "name '../etc' may only hold"),
        (lambda m: m.update(positive_class="melanoma"), "positive_class 'melanoma'"),
        (
            lambda m: m["members"][0].update(file="../../evil.onnx"),
            "must be a relative path inside the package",
        ),
        (lambda m: m["members"][0].update(sha256="abc"), "sha256 must be 64 hexadecimal"),
        (lambda m: m["members"][0].update(weight=0), "weight must be a positive number"),
        (lambda m: m["members"][0]["preprocessing"].update(resize="stretch"), "unknown resize mode"),
        (lambda m: m["members"][0]["preprocessing"].update(colour="sepia"), "unknown colour correction"),
        (lambda m: m["members"][1].update(name="member0"), "member names must be unique"),
        (lambda m: m["metadata"].update(size=99), "metadata.size is 99"),
    ],
)
def test_invalid_manifests_are_refused_with_the_field_named(manifest_data, change, message):
    data = copy.deepcopy(manifest_data)
    change(data)
    with pytest.raises(PackageError) as excinfo:
        parse_manifest(data)
    assert message in str(excinfo.value)


def test_a_manifest_that_is_not_json_is_refused(package):
    (package / "manifest.json").write_text("{not json")
    with pytest.raises(PackageError, match="manifest.json is not valid JSON"):
        read_manifest(package)


def test_a_changed_member_file_fails_its_checksum(package):
    manifest, _ = read_manifest(package)
    with open(package / "member1.onnx", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(PackageError, match="member 'member1': checksum mismatch for member1.onnx"):
        verify_files(package, manifest)


def test_a_missing_member_file_is_named(package):
    manifest, _ = read_manifest(package)
    (package / "member0.onnx").unlink()
    with pytest.raises(PackageError, match="member0.onnx is missing from the package"):
        verify_files(package, manifest)


def test_a_zipped_package_unpacks_to_the_folder_with_the_manifest(tmp_path):
    folder = build_package(tmp_path / "pkg")
    archive = tmp_path / "pkg.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for path in folder.iterdir():
            bundle.write(path, f"ensemble/{path.name}")
    unpacked = extract_zip(archive, tmp_path / "out")
    assert unpacked == (tmp_path / "out" / "ensemble").resolve()
    manifest, _ = read_manifest(unpacked)
    verify_files(unpacked, manifest)


@pytest.mark.parametrize("name", ["../escape.onnx", "/abs/manifest.json", "a/../../escape.txt"])
def test_a_zip_with_a_path_outside_the_package_is_refused(tmp_path, name):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("manifest.json", "{}")
        bundle.writestr(name, b"x")
    with pytest.raises(PackageError, match="unsafe path"):
        extract_zip(archive, tmp_path / "out")
    assert not (tmp_path / "escape.onnx").exists()
    assert not (tmp_path / "escape.txt").exists()


def test_a_damaged_zip_is_refused(tmp_path):
    archive = tmp_path / "broken.zip"
    archive.write_bytes(b"PK\x03\x04 this is not really a zip")
    with pytest.raises(PackageError, match="not a readable zip file"):
        extract_zip(archive, tmp_path / "out")


def test_the_shipped_threshold_keeps_the_sensitivity_it_was_chosen_for(tmp_path):
    """The threshold is the score of the last malignant lesion that must be flagged; the manifest stores it to
    6 decimals, rounded down, so that lesion is still flagged after the round trip (rounded to nearest, the
    1.2.0 threshold 0.23775265 became 0.237753 and its sensitivity fell from 0.950 to 0.948)."""
    from training.evaluate import threshold_for_sensitivity

    rng = np.random.default_rng(3)
    labels = np.array([1] * 404 + [0] * 584)
    scores = np.concatenate([rng.uniform(0.3, 1.0, 404), rng.uniform(0.0, 0.6, 584)])
    order = np.argsort(scores[:404])
    scores[order[20]] = 0.23775264900177717  # the 21st-lowest malignant score: 384 of 404 = 0.9505
    scores[order[:20]] = rng.uniform(0.0, 0.2, 20)
    threshold = threshold_for_sensitivity(labels, scores, 0.95)
    assert threshold == 0.23775264900177717

    manifest, _ = read_manifest(build_package(tmp_path / "pkg", threshold=threshold))
    assert manifest.threshold <= threshold and threshold - manifest.threshold < 1e-6
    assert (scores[labels == 1] >= manifest.threshold).mean() >= 0.95
    assert manifest.risk_bands["medium"] == manifest.threshold


@pytest.mark.parametrize("threshold", [0.3, 0.8, 0.9])
def test_a_manifest_without_bands_gets_the_same_bands_at_registration_and_at_analysis(
    manifest_data, threshold
):
    from inference.models import ModelVersion

    manifest_data.pop("risk_bands")
    manifest_data["threshold"] = threshold
    parsed = parse_manifest(copy.deepcopy(manifest_data))
    stored = ModelVersion(manifest=manifest_data, threshold=threshold)  # a row whose manifest names no bands
    assert parsed.risk_bands == stored.risk_bands
    assert stored.risk_bands["medium"] <= stored.risk_bands["high"]
    assert [stored.risk_band(p) for p in (0.0, threshold, 0.99)] == [
        "low" if threshold > 0 else "medium",
        "high" if threshold >= 0.8 else "medium",
        "high",
    ]
