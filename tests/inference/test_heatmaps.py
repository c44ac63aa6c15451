"""Heatmaps: the Grad-CAM the surgery writes into a member graph, and the runtime's map per image.

Real (tiny) ONNX members shaped like the bundled ones (``tests.inference.members.build_cam_member``): a patch
convolution whose first channel answers red pixels, pooled, concatenated with metadata, one Dense layer over the
seven diagnoses, softmax, ``positive_sum``. Red pushes melanoma, so the malignant score depends on where the
image is red."""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper
from PIL import Image

from inference.package import read_manifest, verify_files
from inference.runtime import Ensemble
from inference.sessions import CPU, RuntimeConfig
from tests.inference.members import CAM_GRID, build_cam_member, build_cam_package
from tests.support.onnx_models import METADATA_SIZE, build_package
from training.__main__ import main as training_main
from training.cam import CAM_OUTPUT, CamError, add_cam

CONFIG = RuntimeConfig(providers=(CPU,))
META = [(55, "female", "torso")]


def picture(quadrant: str | None, size: int = 96) -> Image.Image:
    """A grey image with a red square filling one quadrant ("tl", "tr", "bl", "br"), or none."""
    pixels = np.full((size, size, 3), 128, np.uint8)
    if quadrant:
        half = size // 2
        rows = slice(0, half) if quadrant[0] == "t" else slice(half, size)
        cols = slice(0, half) if quadrant[1] == "l" else slice(half, size)
        pixels[rows, cols] = (230, 20, 20)
    return Image.fromarray(pixels)


def quadrant_means(grid: np.ndarray) -> dict[str, float]:
    h, w = grid.shape[0] // 2, grid.shape[1] // 2
    return {
        "tl": float(grid[:h, :w].mean()),
        "tr": float(grid[:h, w:].mean()),
        "bl": float(grid[h:, :w].mean()),
        "br": float(grid[h:, w:].mean()),
    }


def test_the_graph_map_equals_a_finite_difference_grad_cam(tmp_path):
    """The in-graph map equals ReLU(sum_c g_c F_c) with g = dP(malignant)/d(pooled features) taken by
    central finite differences of the head, on a fixed input."""
    model = add_cam(onnx.load(str(build_cam_member(tmp_path / "m.onnx"))), "positive_sum")
    constants = {i.name: numpy_helper.to_array(i).astype(np.float64) for i in model.graph.initializer}
    for name in ("features_map", "concat"):
        model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(model.SerializeToString(), providers=[CPU])
    rng = np.random.default_rng(1)
    images = rng.random((3, 32, 32, 3)).astype(np.float32)
    metadata = rng.random((3, METADATA_SIZE)).astype(np.float32)
    cam, features, concat = session.run(
        [CAM_OUTPUT, "features_map", "concat"], {"image": images, "metadata": metadata}
    )
    assert cam.shape == (3, CAM_GRID, CAM_GRID) and cam.min() >= 0.0

    def malignant(x):
        z = x @ constants["dense"] + constants["bias"]
        p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
        return float(p @ constants["positive"][:, 0])

    for i in range(3):
        x = concat[i].astype(np.float64)
        grad = []
        for c in range(features.shape[1]):
            step = np.zeros_like(x)
            step[c] = 1e-5
            grad.append((malignant(x + step) - malignant(x - step)) / 2e-5)
        expected = np.maximum(np.tensordot(np.array(grad), features[i], axes=1), 0.0)
        np.testing.assert_allclose(cam[i], expected, atol=1e-6)


def test_the_map_has_the_grid_shape_and_unit_range_and_fused_equals_separate(tmp_path):
    folder = build_cam_package(tmp_path / "pkg")
    manifest, _ = read_manifest(folder)
    maps = []
    for fuse in (True, False):
        ensemble = Ensemble(folder, manifest, CONFIG, fuse=fuse)
        assert (ensemble.fused is not None) is fuse and ensemble.has_heatmaps
        (outcome,) = ensemble.predict([picture("br")], META).images
        assert outcome.heatmap.shape == (CAM_GRID, CAM_GRID)
        assert outcome.heatmap.min() >= 0.0 and outcome.heatmap.max() == pytest.approx(1.0)
        maps.append(outcome.heatmap)
    np.testing.assert_allclose(maps[0], maps[1], atol=1e-6)


@pytest.mark.parametrize("quadrant", ["tl", "tr", "bl", "br"])
@pytest.mark.parametrize("tta", [True, False])
def test_the_map_lights_up_the_quadrant_the_score_depends_on(tmp_path, quadrant, tta):
    folder = build_cam_package(tmp_path / "pkg", tta=tta)
    ensemble = Ensemble(folder, read_manifest(folder)[0], CONFIG)
    lit, plain = ensemble.predict([picture(quadrant), picture(None)], META * 2).images
    assert lit.probability > plain.probability + 0.2  # the red quadrant drives the malignant score
    means = quadrant_means(lit.heatmap)
    assert max(means, key=means.get) == quadrant
    assert means[quadrant] > 0.9 and all(v < 0.1 for q, v in means.items() if q != quadrant)


def test_the_flipped_views_map_is_flipped_back(tmp_path):
    """With horizontal-flip TTA the second view sees the red square on the other side; its map must be
    mirrored back, or a left-hand lesion would light both sides."""
    folder = build_cam_package(tmp_path / "pkg", tta=True)
    ensemble = Ensemble(folder, read_manifest(folder)[0], CONFIG)
    (outcome,) = ensemble.predict([picture("tl")], META).images
    means = quadrant_means(outcome.heatmap)
    assert means["tl"] > 0.9 and means["tr"] < 0.1


def test_a_package_without_the_map_serves_as_before(tmp_path):
    with_map = build_cam_package(tmp_path / "cam")
    without = build_cam_package(tmp_path / "plain", cam=False)
    plain = Ensemble(without, read_manifest(without)[0], CONFIG)
    switched_off = Ensemble(with_map, read_manifest(with_map)[0], CONFIG, heatmaps=False)
    mapped = Ensemble(with_map, read_manifest(with_map)[0], CONFIG)
    image = [picture("bl")]
    a, b, c = (e.predict(image, META).images[0] for e in (plain, switched_off, mapped))
    assert not plain.has_heatmaps and a.heatmap is None and b.heatmap is None
    assert a.probability == pytest.approx(c.probability, abs=1e-6)  # the surgery changes no other output
    assert a.class_probabilities == pytest.approx(c.class_probabilities, abs=1e-6)


def test_add_cam_upgrades_a_copy_and_says_which_members_cannot_have_a_map(tmp_path, capsys):
    source = build_cam_package(tmp_path / "src", cam=False)
    assert training_main(["add-cam", "--model", str(source), "--out", str(tmp_path / "new")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result["members"].values()) == {"map added"}
    manifest, _ = read_manifest(tmp_path / "new")
    verify_files(tmp_path / "new", manifest)  # new sha256 recorded
    assert all(m.outputs["cam"] == CAM_OUTPUT for m in manifest.members)
    assert not any("cam" in m.outputs for m in read_manifest(source)[0].members)  # the source is untouched
    assert training_main(["add-cam", "--model", str(source), "--out", str(tmp_path / "new")]) == 2
    assert "exists" in capsys.readouterr().err
    # Members whose score is not a Dense layer over pooled features get no map, and the output says why.
    plain = build_package(tmp_path / "plain")
    assert training_main(["add-cam", "--model", str(plain), "--out", str(tmp_path / "plain-cam")]) == 0
    reasons = json.loads(capsys.readouterr().out)["members"]
    assert all(r.startswith("no map: ") for r in reasons.values())
    assert not Ensemble(tmp_path / "plain-cam", read_manifest(tmp_path / "plain-cam")[0], CONFIG).has_heatmaps


def test_the_surgery_refuses_a_head_with_a_hidden_layer(tmp_path):
    model = onnx.load(str(build_cam_member(tmp_path / "m.onnx")))
    dense = next(n for n in model.graph.node if n.input and n.input[0] == "concat")
    model.graph.node.append(onnx.helper.make_node("Relu", ["concat"], ["hidden"]))
    dense.input[0] = "hidden"
    with pytest.raises(CamError, match="hidden layer"):
        add_cam(model, "positive_sum")
