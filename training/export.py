"""Keras -> ONNX with tf2onnx ``from_keras`` (dynamic batch), then a parity check against Keras on real inputs:
max |diff| above the tolerance fails the export and removes the file. (``Model.export(format="onnx")`` leaks the
Normalization layers' constants as extra graph inputs that ONNX Runtime rejects: see STACK-NOTES.)"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

PARITY_TOLERANCE = 1e-4


class ExportError(RuntimeError):
    """The ONNX graph cannot be produced or disagrees with the Keras model."""


def to_onnx(model, path: Path, *, image_size: int, metadata_size: int, opset: int = 17) -> str:
    """Write ``model`` (inputs image NHWC, metadata) to ``path``; returns the ONNX output name."""
    import tensorflow as tf
    import tf2onnx

    signature = (
        tf.TensorSpec((None, image_size, image_size, 3), tf.float32, name="image"),
        tf.TensorSpec((None, metadata_size), tf.float32, name="metadata"),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        proto, _ = tf2onnx.convert.from_keras(
            model, input_signature=signature, opset=opset, output_path=str(path)
        )
    except Exception as exc:  # noqa: BLE001 - tf2onnx raises many exception types
        raise ExportError(f"tf2onnx could not convert the model: {exc}") from exc
    return proto.graph.output[0].name


def parity(model, path: Path, images: np.ndarray, metadata: np.ndarray, output: str) -> float:
    """Max |Keras - ONNX Runtime| over the given batch (run twice: batch sizes 1 and N, dynamic batch)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    expected = np.asarray(
        model(  # direct call: the inference graph, no predict() batching differences
            [images.astype(np.float32), metadata.astype(np.float32)], training=False
        ),
        dtype=np.float64,
    )
    got = session.run(
        [output], {"image": images.astype(np.float32), "metadata": metadata.astype(np.float32)}
    )[0]
    single = session.run(
        [output], {"image": images[:1].astype(np.float32), "metadata": metadata[:1].astype(np.float32)}
    )[0]
    return float(max(np.abs(expected - got).max(), np.abs(expected[:1] - single).max()))


def export_member(
    run_dir: str | Path,
    out: str | Path,
    *,
    images: np.ndarray | None = None,
    metadata: np.ndarray | None = None,
    tolerance: float = PARITY_TOLERANCE,
    opset: int = 17,
) -> dict:
    """Export a trained run's member to ONNX and check parity on ``images`` (defaults: the run's first
    validation images). Returns {file, output, parity_max_abs_diff, image_spec}."""
    from training import data as data_mod
    from training.fit import load_member

    run_dir, out = Path(run_dir), Path(out)
    model, config, spec = load_member(run_dir)
    metadata_size = int(model.inputs[1].shape[-1])
    if images is None:
        dataset = data_mod.load_dataset(config.data, task=config.task, check_images=False)
        _, val = (
            data_mod.Split.load(run_dir / "split.json").apply(dataset)
            if (run_dir / "split.json").exists()
            else (None, dataset)
        )
        val = val.subset(range(min(8, len(val.records))))
        images = data_mod.normalised(data_mod.image_cache(val, spec), spec)
        metadata = data_mod.metadata_matrix(val)
    output = to_onnx(model, out, image_size=spec.size, metadata_size=metadata_size, opset=opset)
    diff = parity(model, out, images, metadata, output)
    if not diff <= tolerance:
        out.unlink(missing_ok=True)
        raise ExportError(f"ONNX parity check failed: max |diff| {diff:.3g} > {tolerance:g}; {out} removed")
    result = {
        "file": str(out),
        "output": output,
        "parity_max_abs_diff": diff,
        "image_spec": spec.to_dict(),
        "backbone": config.backbone,
        "bytes": out.stat().st_size,
    }
    out.with_suffix(".parity.json").write_text(json.dumps(result, indent=2))
    return result
