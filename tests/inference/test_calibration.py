"""Calibration and the seven-class differential: manifest round trip, what the runtime serves, and that a
package without them (1.2.x) is served exactly as before."""

import json
import math
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from inference.calibration import sigmoid
from inference.package import PackageError, parse_manifest, read_manifest, write_manifest
from inference.preprocessing import ImageSpec, image_tensor, load_image, metadata_vector
from inference.runtime import Ensemble, RuntimeConfig
from tests.inference.members import (
    DIFFERENTIAL_CLASSES,
    MALIGNANT_CLASSES,
    build_differential_package,
    edit_manifest,
)
from tests.support.images import image_bytes
from tests.support.onnx_models import build_package

META = (34, "female", "lower extremity")
IMAGES = [image_bytes(seed=s) for s in range(3)]
METAS = [META, (None, None, None), (71, "male", "torso")]


def load(folder, *, fuse: bool = True) -> Ensemble:
    manifest, _ = read_manifest(folder)
    return Ensemble(folder, manifest, RuntimeConfig(providers=("CPUExecutionProvider",)), fuse=fuse)


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


@pytest.mark.parametrize(
    ("calibration", "raw", "expected"),
    [
        ({"method": "temperature", "temperature": 2.0}, sigmoid(3.0), sigmoid(1.5)),
        ({"method": "platt", "slope": 0.5, "intercept": -1.0}, sigmoid(2.0), sigmoid(0.0)),
        ({"method": "platt", "slope": 2.0, "intercept": 0.25}, sigmoid(-1.0), sigmoid(-1.75)),
        ({"method": "isotonic", "x": [0.0, 0.5, 1.0], "y": [0.0, 0.2, 1.0]}, 0.25, 0.1),
        ({"method": "isotonic", "x": [0.0, 0.5, 1.0], "y": [0.0, 0.2, 1.0]}, 0.75, 0.6),
    ],
)
def test_known_logits_give_known_probabilities_through_the_manifest(tmp_path, calibration, raw, expected):
    folder = build_package(tmp_path / "p")
    manifest = json.loads((folder / "manifest.json").read_text())
    write_manifest(
        folder,
        name="calibrated",
        version="1.0.0",
        members=manifest["members"],
        threshold=0.3,
        risk_bands={"medium": 0.3, "high": 0.7},
        calibration=calibration,
    )
    parsed, _ = read_manifest(folder)
    assert json.loads((folder / "manifest.json").read_text())["calibration"] == calibration
    assert parsed.calibrate(np.array([raw]))[0] == pytest.approx(float(expected), abs=1e-9)
    # the parsed map writes back the same numbers
    again = parse_manifest({**manifest, "calibration": parsed.calibration.to_dict()})
    assert again.calibrate(np.array([raw]))[0] == pytest.approx(float(expected), abs=1e-9)


def test_the_runtime_serves_calibrated_probabilities(tmp_path):
    plain = load(build_package(tmp_path / "plain"))
    folder = build_package(tmp_path / "calibrated")
    edit_manifest(folder, calibration={"method": "platt", "slope": 0.5, "intercept": -0.4})
    calibrated = load(folder)
    before = plain.predict(IMAGES, METAS).images
    after = calibrated.predict(IMAGES, METAS).images
    for old, new in zip(before, after, strict=True):
        assert new.raw_probability == pytest.approx(old.probability, abs=1e-7)
        assert new.probability == pytest.approx(float(sigmoid(0.5 * _logit(old.probability) - 0.4)), abs=1e-6)
        for name, p in old.member_probabilities.items():
            assert new.member_probabilities[name] == pytest.approx(
                float(sigmoid(0.5 * _logit(p) - 0.4)), abs=1e-6
            )


def test_a_package_without_calibration_is_served_unchanged(tmp_path):
    """The 1.2.1 manifest (no calibration, no differential, no member outputs) still parses, and a package in
    its format serves the members' weighted mean as before: raw and served probability are the same."""
    legacy = json.loads((Path(__file__).parent / "manifest-1.2.1.json").read_text())
    manifest = parse_manifest(legacy)
    assert manifest.version == "1.2.1"
    assert manifest.calibration is None and manifest.differential is None
    assert all(m.outputs == {} for m in manifest.members)
    assert manifest.calibrate(0.1234) == 0.1234

    folder = build_package(tmp_path / "p")
    assert "calibration" not in json.loads((folder / "manifest.json").read_text())
    ensemble = load(folder)
    for image in ensemble.predict(IMAGES, METAS).images:
        assert image.raw_probability == image.probability
        assert image.class_probabilities is None
        assert image.extras == {}
        assert image.probability == pytest.approx(float(np.mean(list(image.member_probabilities.values()))))


def _member_softmax(folder: Path, member, images, metas) -> np.ndarray:
    """The member's softmax computed straight from its file with ONNX Runtime (no runtime code)."""
    import onnx

    model = onnx.load(str(folder / member["file"]))
    model.graph.output.append(onnx.helper.make_tensor_value_info("head/probability/Softmax:0", 1, None))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    spec = ImageSpec.from_dict(member["preprocessing"])
    batch = np.stack([image_tensor(load_image(i), spec) for i in images]).astype(np.float32)
    meta = np.stack([metadata_vector(*m) for m in metas]).astype(np.float32)
    return session.run(["head/probability/Softmax:0"], {"image": batch, "metadata": meta})[0]


@pytest.mark.parametrize("fuse", [True, False])
def test_the_differential_is_the_weighted_mean_of_the_members_and_sums_to_one(tmp_path, fuse):
    folder = build_differential_package(tmp_path / "p", weights=(1.0, 3.0))
    members = json.loads((folder / "manifest.json").read_text())["members"]
    ensemble = load(folder, fuse=fuse)
    assert (ensemble.fused is not None) == fuse
    expected = 0.25 * _member_softmax(folder, members[0], IMAGES, METAS) + 0.75 * _member_softmax(
        folder, members[1], IMAGES, METAS
    )
    for i, image in enumerate(ensemble.predict(IMAGES, METAS).images):
        classes = image.class_probabilities
        assert list(classes) == DIFFERENTIAL_CLASSES
        assert [classes[c] for c in DIFFERENTIAL_CLASSES] == pytest.approx(expected[i].tolist(), abs=1e-6)
        assert sum(classes.values()) == pytest.approx(1.0, abs=1e-6)
        # the members' positive_sum is the sum of their malignant classes: so is the ensemble's risk
        assert image.probability == pytest.approx(sum(classes[c] for c in MALIGNANT_CLASSES), abs=1e-6)
    assert len({round(v, 6) for v in expected[:, 4]}) > 1  # the images differ: the test can fail


def test_a_calibrated_differential_agrees_with_the_calibrated_risk(tmp_path):
    raw = load(build_differential_package(tmp_path / "raw")).predict(IMAGES, METAS).images
    calibration = {"method": "temperature", "temperature": 1.7}
    served = load(build_differential_package(tmp_path / "cal", calibration=calibration)).predict(
        IMAGES, METAS
    )
    for before, after in zip(raw, served.images, strict=True):
        classes = after.class_probabilities
        assert sum(classes.values()) == pytest.approx(1.0, abs=1e-6)
        assert sum(classes[c] for c in MALIGNANT_CLASSES) == pytest.approx(after.probability, abs=1e-6)
        assert after.probability == pytest.approx(float(sigmoid(_logit(before.probability) / 1.7)), abs=1e-6)
        # within the malignant classes the proportions are the members' own
        ratio = before.class_probabilities["mel"] / before.class_probabilities["bcc"]
        assert classes["mel"] / classes["bcc"] == pytest.approx(ratio, rel=1e-5)


@pytest.mark.parametrize("calibration", [None, {"method": "temperature", "temperature": 1.7}])
def test_differential_weights_reorder_the_diagnoses_within_each_side_and_leave_the_risk(
    tmp_path, calibration
):
    plain = load(build_differential_package(tmp_path / "plain", calibration=calibration)).predict(
        IMAGES, METAS
    )
    weights = dict(zip(DIFFERENTIAL_CLASSES, [1.0, 2.0, 0.5, 8.0, 0.25, 0.1, 4.0], strict=True))
    folder = build_differential_package(tmp_path / "weighted", calibration=calibration)
    data = json.loads((folder / "manifest.json").read_text())
    edit_manifest(folder, differential={**data["differential"], "weights": weights})
    manifest, _ = read_manifest(folder)
    assert manifest.differential.to_dict()["weights"] == weights  # round trip
    served = load(folder).predict(IMAGES, METAS)
    for before, after in zip(plain.images, served.images, strict=True):
        assert after.probability == pytest.approx(before.probability, abs=1e-9)  # the risk is untouched
        for side in (MALIGNANT_CLASSES, [c for c in DIFFERENTIAL_CLASSES if c not in MALIGNANT_CLASSES]):
            total = sum(before.class_probabilities[c] for c in side)
            weighted = {c: before.class_probabilities[c] * weights[c] for c in side}
            expected = {c: v / sum(weighted.values()) * total for c, v in weighted.items()}
            assert {c: after.class_probabilities[c] for c in side} == pytest.approx(expected, abs=1e-6)
        assert sum(after.class_probabilities.values()) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.update(calibration={"method": "magic"}), "calibration.method must be one of"),
        (
            lambda m: m.update(calibration={"method": "platt", "slope": -1, "intercept": 0}),
            "must be positive",
        ),
        (lambda m: m.update(calibration={"method": "temperature", "temperature": "hot"}), "finite number"),
        (
            lambda m: m.update(calibration={"method": "isotonic", "x": [0, 0.5, 1], "y": [0, 0.6, 0.4]}),
            "must not decrease",
        ),
        (lambda m: m["members"][0].update(outputs={"classes": 3}), "outputs must map names"),
        (lambda m: m["members"][0].pop("outputs"), "needs the output 'classes'"),
        (lambda m: m["differential"].update(malignant=["scc"]), "differential.malignant"),
        (lambda m: m["differential"].update(weights={"mel": 2.0}), "differential.weights must give every"),
        (
            lambda m: m["differential"].update(weights=dict.fromkeys(DIFFERENTIAL_CLASSES, -1.0)),
            "a positive number",
        ),
    ],
)
def test_bad_calibration_or_differential_entries_are_refused_by_name(tmp_path, change, message):
    folder = build_differential_package(tmp_path / "p")
    data = json.loads((folder / "manifest.json").read_text())
    change(data)
    with pytest.raises(PackageError, match=message):
        parse_manifest(data)


def test_a_declared_output_the_graph_lacks_is_refused_when_loading(tmp_path):
    folder = build_differential_package(tmp_path / "p")
    data = json.loads((folder / "manifest.json").read_text())
    for member in data["members"]:
        member["outputs"] = {"classes": "no/such/tensor:0"}
    (folder / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(PackageError, match="no tensor 'no/such/tensor:0'"):
        load(folder)


def test_a_differential_naming_more_classes_than_the_output_has_fails_the_smoke_test(tmp_path):
    from inference.runtime import smoke_test

    folder = build_differential_package(tmp_path / "p")
    data = json.loads((folder / "manifest.json").read_text())
    data["differential"]["classes"] = [*DIFFERENTIAL_CLASSES, "scc"]
    (folder / "manifest.json").write_text(json.dumps(data))
    manifest, _ = read_manifest(folder)
    with pytest.raises(PackageError, match="has 7 columns, but the differential names 8 classes"):
        smoke_test(folder, manifest)
