"""Grad-CAM of the malignant score inside a member's ONNX graph (graph surgery; numpy + onnx only, no TF).

A member is backbone -> global average pool -> concat([pooled features, metadata branch]) -> one Dense layer
-> softmax over the diagnoses (or a sigmoid) -> ``positive_sum`` (P(malignant)). Because the head is linear
on the pooled features, the gradient of P(malignant) with respect to them needs no autodiff:

    g = (p * m - p * sum(p * m)) @ W_img^T        (softmax p (N, K), malignant mask m (K), W_img (C, K))
    g = p * (1 - p) * W_img^T                      (a sigmoid member)

and, the pooled features being the spatial mean of the last feature map F, Grad-CAM is
``map(y, x) = ReLU(sum_c g_c F_c(y, x))`` (Selvaraju et al. 2017 up to the constant 1/(H*W)). :func:`add_cam`
writes these as plain ONNX ops (Mul, Sub, MatMul, Reshape, ReduceSum, Relu) and declares the map, shape
(N, H, W) on the backbone's grid, as an extra graph output named :data:`CAM_OUTPUT`; the member's other
outputs are unchanged. The runtime reads it as the member's ``outputs.cam`` (``inference.explain``).
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CAM_OUTPUT = "teleder_cam"
CAM_KEY = "cam"
# Nodes between the Dense layer's input and the concat that do not change values at inference.
_PASS_THROUGH = ("Identity", "Dropout", "Cast")
# Nodes between the global average pool and the concat that only drop the 1x1 spatial axes.
_RESHAPES = ("Squeeze", "Reshape", "Flatten", "Identity")


class CamError(ValueError):
    """The member's graph is not built the way the exact Grad-CAM needs (the message says where it differs)."""


@dataclass(frozen=True)
class HeadPath:
    """Where the tensors the map needs live in a member graph."""

    feature_map: str  # the last feature map F, fed to the average pool
    channels_first: bool  # F is (N, C, H, W) (tf2onnx's layout) rather than (N, H, W, C)
    probabilities: str  # the softmax (N, K) or sigmoid (N, 1) output
    activation: str  # "Softmax" or "Sigmoid"
    weights: np.ndarray  # W_img (C, K): the Dense kernel's rows for the image features
    mask: np.ndarray  # (K,) malignant classes (1.0) of the probabilities


def _producers(graph) -> dict:
    return {name: node for node in graph.node for name in node.output}


def _constants(graph) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    values = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for node in graph.node:  # tf2onnx sometimes keeps small weights as Constant nodes
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return values


def _attribute(node, name: str, default=None):
    from onnx import helper

    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return default


def find_head(model, output: str) -> HeadPath:
    """Trace ``output`` back to the feature map and the Dense kernel; raise :class:`CamError` naming the step
    that does not match the dual-input member's structure (``training.model``)."""
    graph = model.graph
    producers, constants = _producers(graph), _constants(graph)

    def producer(tensor: str, what: str):
        node = producers.get(tensor)
        if node is None:
            raise CamError(f"no node produces {what} '{tensor}'")
        return node

    node = producer(output, "the output")
    mask = None
    if node.op_type == "MatMul" and node.input[1] in constants:  # positive_sum: probabilities @ mask
        mask = constants[node.input[1]].reshape(-1).astype(np.float64)
        node = producer(node.input[0], "the class probabilities")
    if node.op_type not in ("Softmax", "Sigmoid"):
        raise CamError(f"the malignant score does not come from a softmax or sigmoid (found {node.op_type})")
    probabilities, activation = node.output[0], node.op_type
    node = producer(node.input[0], "the logits")
    bias_free = node
    if node.op_type == "Add":
        bias_free = producer(node.input[0], "the Dense layer's product")
    if bias_free.op_type == "Gemm":
        if _attribute(bias_free, "transA", 0) or _attribute(bias_free, "transB", 0):
            raise CamError("the Dense layer is a transposed Gemm, which this surgery does not read")
    elif bias_free.op_type != "MatMul":
        raise CamError(f"the logits do not come from a Dense layer (found {bias_free.op_type})")
    kernel = constants.get(bias_free.input[1])
    if kernel is None or kernel.ndim != 2:
        raise CamError("the Dense layer's kernel is not a constant matrix")
    node = producer(bias_free.input[0], "the Dense layer's input")
    while node.op_type in _PASS_THROUGH:
        node = producer(node.input[0], "the Dense layer's input")
    if node.op_type != "Concat":
        raise CamError(
            f"the Dense layer's input is {node.op_type}, not the concat of image features and metadata "
            "(a hidden layer makes the map inexact)"
        )
    if _attribute(node, "axis") not in (1, -1):
        raise CamError("the concat is not along the feature axis")
    pooled = producer(node.input[0], "the image features")
    while pooled.op_type in _RESHAPES:
        pooled = producer(pooled.input[0], "the image features")
    feature_map, channels_first = _pool_input(pooled, constants)
    channels = _channels(model, feature_map, channels_first)
    if channels > kernel.shape[0]:
        raise CamError(f"the feature map has {channels} channels, the Dense kernel {kernel.shape[0]} rows")
    width = kernel.shape[1]
    if activation == "Softmax":
        if mask is None or mask.size != width:
            raise CamError("a softmax member needs its positive_sum mask over the classes")
    else:
        mask = np.ones(width)
        if width != 1:
            raise CamError("a sigmoid member must have one output column")
    return HeadPath(
        feature_map=feature_map,
        channels_first=channels_first,
        probabilities=probabilities,
        activation=activation,
        weights=kernel[:channels].astype(np.float64),
        mask=mask,
    )


def _pool_input(node, constants: dict[str, np.ndarray]) -> tuple[str, bool]:
    if node.op_type == "GlobalAveragePool":
        return node.input[0], True
    if node.op_type == "ReduceMean":
        axes = _attribute(node, "axes")
        if axes is None and len(node.input) > 1:
            axes = constants.get(node.input[1])
        axes = sorted(int(a) for a in np.asarray(axes if axes is not None else []).ravel())
        if axes in ([2, 3], [-2, -1]):
            return node.input[0], True
        if axes in ([1, 2], [-3, -2]):
            return node.input[0], False
        raise CamError(f"the average pool reduces axes {axes}, not the spatial ones")
    raise CamError(f"the image features do not come from a global average pool (found {node.op_type})")


def _channels(model, tensor: str, channels_first: bool) -> int:
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model).graph
    for info in [*inferred.value_info, *inferred.output, *inferred.input]:
        if info.name == tensor:
            dims = info.type.tensor_type.shape.dim
            if len(dims) == 4:
                dim = dims[1] if channels_first else dims[3]
                if dim.HasField("dim_value"):
                    return int(dim.dim_value)
    raise CamError(f"the channel count of the feature map '{tensor}' is not known statically")


def has_cam(model) -> bool:
    return any(o.name == CAM_OUTPUT for o in model.graph.output)


def add_cam(model, output: str):
    """Return ``model`` with the Grad-CAM of ``output`` (P(malignant)) as the extra graph output
    :data:`CAM_OUTPUT`, shape (N, H, W). A model that has it already is returned unchanged."""
    import onnx
    from onnx import helper, numpy_helper

    if has_cam(model):
        return model
    head = find_head(model, output)
    graph = model.graph
    p = head.probabilities

    def const(name: str, value: np.ndarray) -> str:
        graph.initializer.append(numpy_helper.from_array(np.asarray(value), f"cam/{name}"))
        return f"cam/{name}"

    def node(op: str, inputs: list[str], name: str, **attrs) -> str:
        graph.node.append(helper.make_node(op, inputs, [f"cam/{name}"], name=f"cam/{name}", **attrs))
        return f"cam/{name}"

    if head.activation == "Softmax":
        pm = node("Mul", [p, const("mask", head.mask.astype(np.float32)[None, :])], "p_mask")
        mal = node("ReduceSum", [pm, const("axis_last", np.array([-1], np.int64))], "p_malignant", keepdims=1)
        slope = node("Sub", [pm, node("Mul", [p, mal], "p_times_mal")], "dmal_dlogits")
    else:
        one = const("one", np.ones((1, 1), np.float32))
        slope = node("Mul", [p, node("Sub", [one, p], "one_minus_p")], "dmal_dlogits")
    grad = node("MatMul", [slope, const("kernel_t", head.weights.T.astype(np.float32))], "dmal_dfeatures")
    shape = [0, -1, 1, 1] if head.channels_first else [0, 1, 1, -1]
    grad = node("Reshape", [grad, const("grad_shape", np.array(shape, np.int64))], "grad_map")
    weighted = node("Mul", [head.feature_map, grad], "weighted")
    axis = 1 if head.channels_first else 3
    summed = node(
        "ReduceSum", [weighted, const("axis_channels", np.array([axis], np.int64))], "sum", keepdims=0
    )
    graph.node.append(helper.make_node("Relu", [summed], [CAM_OUTPUT], name="cam/relu"))
    graph.output.append(
        helper.make_tensor_value_info(CAM_OUTPUT, onnx.TensorProto.FLOAT, ["batch", "height", "width"])
    )
    onnx.checker.check_model(model)
    return model


def add_cam_file(path: Path, output: str) -> str:
    """Add the map to the ONNX file at ``path`` in place; return the output name (``CamError`` if the graph
    does not fit)."""
    import onnx

    model = onnx.load(str(path))
    if not has_cam(model):
        onnx.save(add_cam(model, output), str(path))
    return CAM_OUTPUT


def with_cam(path: Path, output: str, outputs: dict[str, str] | None) -> dict[str, str]:
    """``python -m training package``: add the map to the member file at ``path`` when its graph fits and
    return its ``outputs`` with ``cam`` declared; a graph it does not fit keeps its outputs (and is said)."""
    try:
        tensor = add_cam_file(Path(path), output)
    except CamError as exc:
        print(f"{Path(path).name}: no heatmap ({exc})", file=sys.stderr)
        return dict(outputs or {})
    return {**(outputs or {}), CAM_KEY: tensor}


def upgrade_package(source: Path, out: Path, *, version: str | None = None) -> dict:
    """Copy the package folder ``source`` to the new folder ``out`` with the map added to every member it fits
    (members it does not fit keep no ``outputs.cam``; the reason is returned). Thresholds, calibration and the
    gate stay as they are: the existing outputs are computed by the same nodes as before."""
    from inference.package import read_manifest

    source, out = Path(source), Path(out)
    if out.exists():
        raise FileExistsError(f"{out} exists: give a new folder")
    manifest, _ = read_manifest(source)
    shutil.copytree(source, out)
    try:
        return _upgrade_members(out, manifest, version)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)  # no half-upgraded package is left behind
        raise


def _upgrade_members(out: Path, manifest, version: str | None) -> dict:
    from inference.package import MANIFEST_NAME, read_manifest, sha256_file, verify_files

    data = json.loads((out / MANIFEST_NAME).read_text())
    result: dict = {"package": str(out), "members": {}}
    for entry, member in zip(data["members"], manifest.members, strict=True):
        path = out / member.file
        try:
            tensor = add_cam_file(path, member.output)
        except CamError as exc:
            result["members"][member.name] = f"no map: {exc}"
            continue
        entry["sha256"] = sha256_file(path)
        entry["outputs"] = {**(entry.get("outputs") or {}), CAM_KEY: tensor}
        result["members"][member.name] = "map added"
    if version:
        data["version"] = version
    (out / MANIFEST_NAME).write_text(json.dumps(data, indent=2))
    verify_files(out, read_manifest(out)[0])  # the new manifest parses and its files match their sha256
    return result
