"""Tiny but real dual-input ONNX models and model packages for tests (built with onnx.helper).

Each member computes sigmoid(a * mean(image) + w . metadata + b) from an NHWC float image and a metadata
vector, so its output depends on both inputs like the real EfficientNet members do.
"""

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from inference.package import member_entry, write_manifest
from inference.preprocessing import ImageSpec, MetadataSpec

METADATA_SIZE = MetadataSpec().size


def build_member(
    path: Path,
    *,
    seed: int = 0,
    image_size: int = 32,
    metadata_size: int = METADATA_SIZE,
    scale: float = 4.0,
    opset: int = 17,
) -> Path:
    rng = np.random.default_rng(seed)
    w = rng.normal(0, 0.5, size=(metadata_size, 1)).astype(np.float32)
    a = np.array([scale * (1 + 0.1 * seed)], dtype=np.float32)
    b = np.array([rng.normal(0, 0.3)], dtype=np.float32)
    nodes = [
        helper.make_node("ReduceMean", ["image"], ["pooled"], axes=[1, 2, 3], keepdims=0),  # (N,)
        helper.make_node("Unsqueeze", ["pooled", "axis1"], ["pooled2"]),  # (N,1)
        helper.make_node("Mul", ["pooled2", "a"], ["img_term"]),
        helper.make_node("MatMul", ["metadata", "w"], ["meta_term"]),
        helper.make_node("Add", ["img_term", "meta_term"], ["s1"]),
        helper.make_node("Add", ["s1", "b"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["probability"]),
    ]
    graph = helper.make_graph(
        nodes,
        f"member{seed}",
        [
            helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", image_size, image_size, 3]),
            helper.make_tensor_value_info("metadata", TensorProto.FLOAT, ["batch", metadata_size]),
        ],
        [helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["batch", 1])],
        initializer=[
            numpy_helper.from_array(w, "w"),
            numpy_helper.from_array(a, "a"),
            numpy_helper.from_array(b, "b"),
            numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"),
        ],
    )
    if opset >= 18:
        graph.node[0].attribute.pop()  # ReduceMean takes axes as an input from opset 18
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def build_package(
    folder: Path,
    *,
    name: str = "test-ensemble",
    version: str = "1.0.0",
    members: int = 2,
    image_size: int = 32,
    threshold: float = 0.3,
    bands: dict | None = None,
    tta: bool = False,
) -> Path:
    """A complete model package folder (manifest.json + member ONNX files) in the documented format."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    member_entries = []
    for i in range(members):
        filename = f"member{i}.onnx"
        build_member(folder / filename, seed=i, image_size=image_size)
        member_entries.append(
            member_entry(
                f"member{i}",
                folder / filename,
                ImageSpec(size=image_size, normalisation="unit"),
                "probability",
            )
        )
    write_manifest(
        folder,
        name=name,
        version=version,
        members=member_entries,
        threshold=threshold,
        risk_bands=bands or {"medium": threshold, "high": 0.7},
        tta=tta,
        training={"data": "generated test images", "n_train": 0},
        metrics={"auc": 0.5},
    )
    return folder
