"""``python -m training quantize``: static int8 members from a small convolutional test package, the parity gate
(refusal on a single-colour calibration), mixed-precision packages that load and fuse, and the manifest's
``precision`` field. No TensorFlow: the quantizer needs onnxruntime and onnx only."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from inference.package import PackageError, member_entry, parse_manifest, read_manifest, write_manifest
from inference.preprocessing import ImageSpec
from inference.runtime import CPU, Ensemble, RuntimeConfig
from tests.support.onnx_models import METADATA_SIZE
from tests.training.test_data_metrics import write_dataset
from training.data import load_dataset, make_split

ROOT = Path(__file__).resolve().parents[2]
SIZE = 32
FEATURES = "features"


def build_conv_member(path: Path, *, seed: int = 0) -> Path:
    """A small dual-input CNN: NHWC -> NCHW, 3x3 stride-2 conv, depthwise 3x3, 1x1 conv (ReLU6 after each),
    global pooling, concatenation with the metadata, a dense layer and a sigmoid. Positive filters and a
    negative dense weight: darker images score higher, as in the generated data set's malignant images."""
    rng = np.random.default_rng(seed)
    w1 = np.abs(rng.normal(0, 0.15, (8, 3, 3, 3))).astype(np.float32)
    w2 = np.abs(rng.normal(0, 0.15, (8, 1, 3, 3))).astype(np.float32)
    w3 = np.abs(rng.normal(0, 0.15, (16, 8, 1, 1))).astype(np.float32)
    dense = np.concatenate(
        [-np.abs(rng.normal(0.25, 0.05, (16, 1))), rng.normal(0, 0.05, (METADATA_SIZE, 1))]
    )
    init = [
        numpy_helper.from_array(w1, "w1"),
        numpy_helper.from_array(rng.normal(0, 0.05, 8).astype(np.float32), "b1"),
        numpy_helper.from_array(w2, "w2"),
        numpy_helper.from_array(rng.normal(0, 0.05, 8).astype(np.float32), "b2"),
        numpy_helper.from_array(w3, "w3"),
        numpy_helper.from_array(rng.normal(0, 0.05, 16).astype(np.float32), "b3"),
        numpy_helper.from_array(dense.astype(np.float32), "dense"),
        numpy_helper.from_array(np.array([4.4], np.float32), "bias"),
        numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
        numpy_helper.from_array(np.array(6.0, np.float32), "six"),
    ]
    nodes = [
        helper.make_node("Transpose", ["image"], ["nchw"], perm=[0, 3, 1, 2], name="to_nchw"),
        helper.make_node(
            "Conv", ["nchw", "w1", "b1"], ["c1"], strides=[2, 2], pads=[1, 1, 1, 1], name="stem"
        ),
        helper.make_node("Clip", ["c1", "zero", "six"], ["r1"], name="stem_relu6"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], group=8, pads=[1, 1, 1, 1], name="dwconv"),
        helper.make_node("Clip", ["c2", "zero", "six"], ["r2"], name="dw_relu6"),
        helper.make_node("Conv", ["r2", "w3", "b3"], ["c3"], name="project"),
        helper.make_node("Clip", ["c3", "zero", "six"], ["r3"], name="head_relu6"),
        helper.make_node("GlobalAveragePool", ["r3"], ["pooled"], name="pool"),
        helper.make_node("Flatten", ["pooled"], [FEATURES], name="flatten"),
        helper.make_node("Concat", [FEATURES, "metadata"], ["joined"], axis=1, name="concat"),
        helper.make_node("MatMul", ["joined", "dense"], ["logit0"], name="dense"),
        helper.make_node("Add", ["logit0", "bias"], ["logit"], name="dense_bias"),
        helper.make_node("Sigmoid", ["logit"], ["probability"], name="sigmoid"),
    ]
    graph = helper.make_graph(
        nodes,
        f"conv{seed}",
        [
            helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", SIZE, SIZE, 3]),
            helper.make_tensor_value_info("metadata", TensorProto.FLOAT, ["batch", METADATA_SIZE]),
        ],
        [helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["batch", 1])],
        initializer=init,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A generated data set with a lesion-grouped split, and a two-member conv package whose threshold flags
    every malignant validation image with a margin."""
    folder = tmp_path_factory.mktemp("quantize")
    csv_path = write_dataset(folder, n=60, size=40, bad=False)
    dataset = load_dataset(csv_path)
    split = make_split(dataset, k=4, dedup=False)
    (folder / "package" / "training").mkdir(parents=True)
    split.save(folder / "package" / "training" / "split.json")
    spec = ImageSpec(size=SIZE, normalisation="unit")
    entries = []
    for k in range(2):
        path = build_conv_member(folder / "package" / f"conv{k}.onnx", seed=k)
        entries.append(member_entry(f"conv{k}", path, spec, "probability"))
    entries[0]["outputs"] = {"features": FEATURES}  # an extra output other code reads by tensor name
    write_manifest(folder / "package", name="conv-test", version="1.0.0", members=entries, threshold=0.5,
                   risk_bands={"medium": 0.5, "high": 0.9}, tta=True)  # fmt: skip
    _, val = split.apply(dataset)
    package = folder / "package"
    manifest, _ = read_manifest(package)
    scores = _scores(package, val)
    labels = np.array([r.malignant for r in val.records], bool)
    threshold = float(scores[labels].min()) - 0.03
    raw = json.loads((package / "manifest.json").read_text())
    raw["threshold"] = threshold
    raw["risk_bands"] = {"medium": threshold, "high": max(threshold, 0.9)}
    (package / "manifest.json").write_text(json.dumps(raw, indent=2))
    return folder, csv_path, package


def _scores(package: Path, dataset) -> np.ndarray:
    manifest, _ = read_manifest(package)
    ensemble = Ensemble(package, manifest, RuntimeConfig(providers=(CPU,)))
    records = dataset.records
    outcomes, _ = ensemble.run(
        ensemble.prepare([r.path for r in records], [(r.age, None, None) for r in records])
    )
    return np.array([o.probability for o in outcomes])


def _quantize(*args: str) -> subprocess.CompletedProcess:
    """Run the command in a fresh interpreter in which TensorFlow cannot be imported."""
    code = (
        "import sys; sys.modules['tensorflow'] = None; sys.modules['keras'] = None\n"
        "from training.__main__ import main; raise SystemExit(main(sys.argv[1:]))"
    )
    return subprocess.run(
        [sys.executable, "-c", code, "quantize", *args],
        capture_output=True, text=True, cwd=ROOT, timeout=300, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin"},
    )  # fmt: skip


@pytest.fixture(scope="module")
def quantized(workspace):
    folder, csv_path, package = workspace
    out = folder / "int8"
    result = _quantize("--package", str(package), "--calibration", str(csv_path), "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result


def test_quantize_writes_an_int8_package_with_its_parity(workspace, quantized):
    folder, csv_path, package = workspace
    out, result = quantized
    manifest, _ = read_manifest(out)
    assert manifest.version == "1.0.0-int8"
    assert [m.precision for m in manifest.members] == ["int8", "int8"] and manifest.precision == "int8"
    assert manifest.threshold == read_manifest(package)[0].threshold
    record = manifest.raw["quantization"]
    parity = record["parity"]
    assert parity["auc_fp32"] - parity["auc_int8"] <= 0.002
    assert parity["sensitivity_int8"] >= parity["sensitivity_fp32"]
    assert 0 < parity["max_abs_diff"] < 0.05  # real int8 arithmetic: close, not identical
    assert record["calibration"]["subset"] == "train" and record["calibration"]["images"] > 10
    assert set(record["members"]) == {"conv0", "conv1"}
    assert "validation AUC" in result.stderr and "sensitivity at threshold" in result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1])["members"] == {"conv0": "int8", "conv1": "int8"}
    member = onnx.load(str(out / "conv0.onnx"))
    ops = {n.op_type for n in member.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    weights = [i for i in member.graph.initializer if i.data_type == TensorProto.INT8]
    assert weights, "the convolution weights are stored as int8"
    # The head stays float32 under its own names: the declared extra output is still there.
    assert FEATURES in {t for n in member.graph.node for t in n.output}
    assert {o.domain for o in member.opset_import} <= {"", "ai.onnx.ml"}
    scores = np.load(out / "validation_scores.npz")
    assert {"probability", "probability_fp32", "label"} <= set(scores.files)
    assert not list(folder.glob(".int8.partial-*"))


def test_the_int8_package_fuses_and_answers_like_the_source(workspace, quantized):
    folder, csv_path, package = workspace
    out, _ = quantized
    dataset = load_dataset(csv_path)
    reference, candidate = _scores(package, dataset), _scores(out, dataset)
    assert np.abs(reference - candidate).max() < 0.05
    manifest, _ = read_manifest(out)
    assert Ensemble(out, manifest, RuntimeConfig(providers=(CPU,))).fused is not None


def test_a_mixed_precision_package_loads_and_fuses(workspace, tmp_path):
    folder, csv_path, package = workspace
    out = tmp_path / "mixed"
    result = _quantize(
        "--package", str(package), "--calibration", str(csv_path), "--out", str(out), "--fp32-member", "conv1",
        "--fp32-layers", "head", "--fp32-layers", "first", "--version", "1.0.0-mixed",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    manifest, _ = read_manifest(out)
    assert [m.precision for m in manifest.members] == ["int8", "fp32"] and manifest.precision == "mixed"
    assert (out / "conv1.onnx").read_bytes() == (package / "conv1.onnx").read_bytes()
    ensemble = Ensemble(out, manifest, RuntimeConfig(providers=(CPU,)))
    assert ensemble.fused is not None
    dataset = load_dataset(csv_path)
    assert np.abs(_scores(out, dataset) - _scores(package, dataset)).max() < 0.05
    first = onnx.load(str(out / "conv0.onnx"))
    stem = next(n for n in first.graph.node if n.name == "stem")
    assert not any("DequantizeLinear" in i for i in stem.input[1:2]), "the first layer kept fp32 weights"


def test_a_single_colour_calibration_is_refused_and_nothing_is_written(workspace, tmp_path):
    folder, csv_path, package = workspace
    broken = tmp_path / "broken"
    (broken / "images").mkdir(parents=True)
    split = json.loads((package / "training" / "split.json").read_text())
    train_ids = set(split["train"])
    for row in load_dataset(csv_path).records:
        image = Image.open(row.path)
        if row.image_id in train_ids:  # every calibration image is plain black
            image = Image.new("RGB", image.size, (0, 0, 0))
        image.save(broken / "images" / Path(row.path).name)
    (broken / "labels.csv").write_text(csv_path.read_text())
    out = tmp_path / "int8"
    result = _quantize(
        "--package", str(package), "--calibration", str(broken / "labels.csv"), "--out", str(out)
    )
    assert result.returncode != 0, result.stderr
    assert (
        "refused, nothing written" in result.stderr and "specificity at the threshold drops" in result.stderr
    )
    assert "validation AUC" in result.stderr  # the comparison is printed
    assert not out.exists() and not list(tmp_path.glob(".int8.partial-*"))


def test_quantize_rejects_bad_arguments_clearly(workspace, tmp_path):
    from training.__main__ import main

    folder, csv_path, package = workspace
    args = ["quantize", "--package", str(package), "--calibration", str(csv_path)]
    assert main([*args, "--out", str(package)]) == 2  # exists
    assert main([*args, "--out", str(tmp_path / "x"), "--fp32-member", "nope"]) == 2
    assert main([*args, "--out", str(tmp_path / "y"), "--split", str(tmp_path / "missing.json")]) == 2
    assert main([*args, "--out", str(package / "int8")]) == 2  # inside the source package
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
    assert not (package / "int8").exists()


def test_member_precision_is_optional_and_checked(workspace):
    folder, csv_path, package = workspace
    raw = json.loads((package / "manifest.json").read_text())
    assert "precision" not in raw["members"][0]
    assert parse_manifest(raw).members[0].precision == "fp32"  # packages written before the field
    raw["members"][0]["precision"] = "int4"
    with pytest.raises(PackageError, match="precision must be one of"):
        parse_manifest(raw)


def test_the_gate_names_each_reason():
    from training.quantize import compare, gate

    labels = np.array([1, 1, 1, 0, 0, 0], bool)
    reference = np.array([0.9, 0.8, 0.6, 0.3, 0.2, 0.1])
    assert gate(compare(labels, reference, reference + 0.01, 0.5), 0.002) == []
    missed = compare(labels, reference, np.array([0.9, 0.8, 0.45, 0.3, 0.2, 0.1]), 0.5)
    assert any("sensitivity at the threshold 0.5000 drops" in r for r in gate(missed, 0.002))
    swapped = compare(labels, reference, np.array([0.9, 0.8, 0.55, 0.6, 0.2, 0.1]), 0.5)
    reasons = gate(swapped, 0.002)
    assert any("validation AUC drops by" in r for r in reasons)
    assert any("specificity at the threshold drops" in r for r in reasons)
