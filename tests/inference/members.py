"""Special-purpose ONNX members for runtime tests (real graphs, built with onnx.helper)."""

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from inference.package import sha256_file
from tests.support.onnx_models import METADATA_SIZE, build_package


def _save(graph, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def _inputs(image_size: int):
    return [
        helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", image_size, image_size, 3]),
        helper.make_tensor_value_info("metadata", TensorProto.FLOAT, ["batch", METADATA_SIZE]),
    ]


def build_corner_member(path: Path, image_size: int = 32) -> Path:
    """probability = top-left red pixel value (unit-normalised): not flip invariant, so TTA shows."""
    nodes = [
        helper.make_node("Slice", ["image", "starts", "ends", "axes"], ["corner"]),
        helper.make_node("Reshape", ["corner", "shape"], ["p0"]),
        helper.make_node("ReduceSum", ["metadata", "axes1"], ["msum"], keepdims=1),
        helper.make_node("Mul", ["msum", "zero"], ["mzero"]),
        helper.make_node("Add", ["p0", "mzero"], ["probability"]),
    ]
    init = [
        numpy_helper.from_array(np.array([0, 0, 0], dtype=np.int64), "starts"),
        numpy_helper.from_array(np.array([1, 1, 1], dtype=np.int64), "ends"),
        numpy_helper.from_array(np.array([1, 2, 3], dtype=np.int64), "axes"),
        numpy_helper.from_array(np.array([-1, 1], dtype=np.int64), "shape"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axes1"),
        numpy_helper.from_array(np.array([0.0], dtype=np.float32), "zero"),
    ]
    out = [helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["batch", 1])]
    return _save(helper.make_graph(nodes, "corner", _inputs(image_size), out, initializer=init), path)


def build_scaled_age_member(path: Path, factor: float, image_size: int = 32) -> Path:
    """probability = factor * (age / age_scale) + 0 * mean(image): above 1 for old patients when factor > 1.2."""
    nodes = [
        helper.make_node("Slice", ["metadata", "s", "e", "ax"], ["age"]),
        helper.make_node("Mul", ["age", "factor"], ["scaled"]),
        helper.make_node("ReduceMean", ["image"], ["pooled"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("Unsqueeze", ["pooled", "ax"], ["pooled2"]),
        helper.make_node("Mul", ["pooled2", "zero"], ["izero"]),
        helper.make_node("Add", ["scaled", "izero"], ["probability"]),
    ]
    init = [
        numpy_helper.from_array(np.array([0], dtype=np.int64), "s"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "e"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "ax"),
        numpy_helper.from_array(np.array([factor], dtype=np.float32), "factor"),
        numpy_helper.from_array(np.array([0.0], dtype=np.float32), "zero"),
    ]
    out = [helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["batch", 1])]
    return _save(helper.make_graph(nodes, "age", _inputs(image_size), out, initializer=init), path)


def build_unnormalised_member(path: Path, image_size: int = 32) -> Path:
    """A logit instead of a probability: sum of the image, far outside [0, 1]."""
    nodes = [
        helper.make_node("ReduceSum", ["image", "axes"], ["s"], keepdims=0),
        helper.make_node("Unsqueeze", ["s", "one"], ["s2"]),
        helper.make_node("ReduceSum", ["metadata", "one"], ["m"], keepdims=1),
        helper.make_node("Add", ["s2", "m"], ["probability"]),
    ]
    init = [
        numpy_helper.from_array(np.array([1, 2, 3], dtype=np.int64), "axes"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "one"),
    ]
    out = [helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["batch", 1])]
    return _save(helper.make_graph(nodes, "logit", _inputs(image_size), out, initializer=init), path)


def replace_member(folder: Path, index: int, builder, **kwargs) -> Path:
    """Swap member ``index`` of a package for another graph and update its checksum in the manifest."""
    manifest_path = Path(folder) / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    member = manifest["members"][index]
    builder(Path(folder) / member["file"], **kwargs)
    member["sha256"] = sha256_file(Path(folder) / member["file"])
    manifest_path.write_text(json.dumps(manifest, indent=2))
    return folder


def edit_manifest(folder: Path, **changes) -> Path:
    manifest_path = Path(folder) / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest.update(changes)
    manifest_path.write_text(json.dumps(manifest, indent=2))
    return folder


__all__ = ["build_package", "replace_member", "edit_manifest"]


def build_softmax_member(path: Path, classes: int = 3, image_size: int = 32, seed: int = 0) -> Path:
    """A multiclass member: softmax over ``classes`` of a linear map of the pooled image and the metadata."""
    rng = np.random.default_rng(seed)
    nodes = [
        helper.make_node("ReduceMean", ["image"], ["pooled"], axes=[1, 2], keepdims=0),  # (N, 3)
        helper.make_node("MatMul", ["pooled", "wi"], ["a"]),
        helper.make_node("MatMul", ["metadata", "wm"], ["b"]),
        helper.make_node("Add", ["a", "b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    init = [
        numpy_helper.from_array(rng.normal(0, 2, (3, classes)).astype(np.float32), "wi"),
        numpy_helper.from_array(rng.normal(0, 1, (METADATA_SIZE, classes)).astype(np.float32), "wm"),
    ]
    out = [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", classes])]
    return _save(helper.make_graph(nodes, "softmax", _inputs(image_size), out, initializer=init), path)


DIFFERENTIAL_CLASSES = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
MALIGNANT_CLASSES = ["akiec", "bcc", "mel"]
SOFTMAX_TENSOR = "head/probability/Softmax:0"


def build_differential_member(path: Path, image_size: int = 32, seed: int = 0) -> Path:
    """Like the bundled members: a softmax over the seven diagnoses inside the graph (tensor
    ``SOFTMAX_TENSOR``), summed over akiec + bcc + mel into the one output ``positive_sum``."""
    rng = np.random.default_rng(seed)
    classes = len(DIFFERENTIAL_CLASSES)
    positive = np.array([[c in MALIGNANT_CLASSES] for c in DIFFERENTIAL_CLASSES], dtype=np.float32)
    nodes = [
        helper.make_node("ReduceMean", ["image"], ["pooled"], axes=[1, 2], keepdims=0),  # (N, 3)
        helper.make_node("MatMul", ["pooled", "wi"], ["a"]),
        helper.make_node("MatMul", ["metadata", "wm"], ["b"]),
        helper.make_node("Add", ["a", "b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], [SOFTMAX_TENSOR], axis=1),
        helper.make_node("MatMul", [SOFTMAX_TENSOR, "positive"], ["positive_sum"]),
    ]
    init = [
        numpy_helper.from_array(rng.normal(0, 3, (3, classes)).astype(np.float32), "wi"),
        numpy_helper.from_array(rng.normal(0, 1, (METADATA_SIZE, classes)).astype(np.float32), "wm"),
        numpy_helper.from_array(positive, "positive"),
    ]
    out = [helper.make_tensor_value_info("positive_sum", TensorProto.FLOAT, ["batch", 1])]
    return _save(helper.make_graph(nodes, "differential", _inputs(image_size), out, initializer=init), path)


def build_differential_package(
    folder: Path, *, weights=(1.0, 3.0), calibration: dict | None = None, **kwargs
):
    """A two-member package of differential members that declares the class output (and a calibration)."""
    folder = build_package(folder, members=len(weights), **kwargs)
    manifest_path = Path(folder) / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    for k, (member, weight) in enumerate(zip(manifest["members"], weights, strict=True)):
        build_differential_member(Path(folder) / member["file"], seed=k + 3)
        member.update(
            sha256=sha256_file(Path(folder) / member["file"]),
            weight=weight,
            output="positive_sum",
            outputs={"classes": SOFTMAX_TENSOR},
        )
    manifest["differential"] = {
        "output": "classes",
        "classes": DIFFERENTIAL_CLASSES,
        "malignant": MALIGNANT_CLASSES,
    }
    if calibration is not None:
        manifest["calibration"] = calibration
    manifest_path.write_text(json.dumps(manifest, indent=2))
    return folder


CAM_GRID = 4  # the tiny backbone's feature grid (32 px image, 8 px patches)


def build_cam_member(path: Path, image_size: int = 32, seed: int = 0) -> Path:
    """Shaped like the bundled members, with a real feature map: NHWC image -> NCHW -> an 8x8 stride-8 "patch"
    convolution with ReLU (channel 0 answers red, (R - G - B); channel 1 answers grey, G) -> global average pool
    -> concat with a metadata Dense+ReLU -> Dense over the seven diagnoses -> softmax -> ``positive_sum``.
    Red pushes mel, grey pushes nv: the malignant score depends only on where the image is red."""
    rng = np.random.default_rng(seed)
    classes = len(DIFFERENTIAL_CLASSES)
    patch = image_size // CAM_GRID
    kernel = np.zeros((2, 3, patch, patch), np.float32)
    kernel[0, :, :, :] = np.array([1.0, -1.0, -1.0])[:, None, None] / patch**2
    kernel[1, 1, :, :] = 1.0 / patch**2
    dense = np.zeros((2 + 4, classes), np.float32)
    dense[0, DIFFERENTIAL_CLASSES.index("mel")] = 8.0
    dense[1, DIFFERENTIAL_CLASSES.index("nv")] = 4.0
    dense[2:] = rng.normal(0, 0.1, (4, classes))
    positive = np.array([[c in MALIGNANT_CLASSES] for c in DIFFERENTIAL_CLASSES], dtype=np.float32)
    nodes = [
        helper.make_node("Transpose", ["image"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["nchw", "kernel"], ["conv"], strides=[patch, patch]),
        helper.make_node("Relu", ["conv"], ["features_map"]),
        helper.make_node("GlobalAveragePool", ["features_map"], ["pooled4d"]),
        helper.make_node("Squeeze", ["pooled4d", "spatial"], ["pooled"]),
        helper.make_node("MatMul", ["metadata", "wm"], ["m0"]),
        helper.make_node("Relu", ["m0"], ["meta"]),
        helper.make_node("Concat", ["pooled", "meta"], ["concat"], axis=-1),
        helper.make_node("MatMul", ["concat", "dense"], ["logits0"]),
        helper.make_node("Add", ["logits0", "bias"], ["logits"]),
        helper.make_node("Softmax", ["logits"], [SOFTMAX_TENSOR], axis=1),
        helper.make_node("MatMul", [SOFTMAX_TENSOR, "positive"], ["positive_sum"]),
    ]
    init = [
        numpy_helper.from_array(kernel, "kernel"),
        numpy_helper.from_array(np.array([2, 3], np.int64), "spatial"),
        numpy_helper.from_array(rng.normal(0, 0.3, (METADATA_SIZE, 4)).astype(np.float32), "wm"),
        numpy_helper.from_array(dense, "dense"),
        numpy_helper.from_array(np.full(classes, -1.0, np.float32), "bias"),
        numpy_helper.from_array(positive, "positive"),
    ]
    out = [helper.make_tensor_value_info("positive_sum", TensorProto.FLOAT, ["batch", 1])]
    return _save(helper.make_graph(nodes, "cam", _inputs(image_size), out, initializer=init), path)


def build_cam_package(folder: Path, *, tta: bool = True, cam: bool = True, **kwargs) -> Path:
    """A two-member package of :func:`build_cam_member` members declaring the differential; with ``cam`` the
    map is added the way ``python -m training add-cam`` adds it (``training.cam``)."""
    from training.cam import CAM_KEY, add_cam_file

    folder = build_differential_package(folder, tta=tta, **kwargs)
    manifest_path = Path(folder) / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    for k, member in enumerate(manifest["members"]):
        path = Path(folder) / member["file"]
        build_cam_member(path, seed=k)
        if cam:
            member["outputs"][CAM_KEY] = add_cam_file(path, member["output"])
        member["sha256"] = sha256_file(path)
    manifest_path.write_text(json.dumps(manifest, indent=2))
    return folder
