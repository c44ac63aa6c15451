"""The TensorFlow side of ``benchmarks/inference.py``, run only in its subprocess (``--export-standin``,
``--keras-baseline``) so that the measuring process never loads TensorFlow: the EfficientNet-Lite stand-in
ensemble exported with tf2onnx, and the per-request Keras baseline a Flask + Keras service would be."""

from __future__ import annotations

import json
import time
from pathlib import Path

STANDIN_VARIANTS = (("lite0", 224), ("lite1", 240), ("lite2", 260))


def _keras_member(variant: str, size: int, metadata_size: int, seed: int):
    import keras

    from training.backbones import build_backbone

    keras.utils.set_random_seed(seed)
    backbone = build_backbone(f"efficientnet_{variant}", image_size=size, weights=None)
    image = keras.Input((size, size, 3), name="image")
    metadata = keras.Input((metadata_size,), name="metadata")
    features = keras.layers.Concatenate()([backbone(image), metadata])
    output = keras.layers.Dense(1, activation="sigmoid", name="probability")(features)
    return keras.Model([image, metadata], output, name=f"standin_{variant}")


def export_standin(folder: Path) -> None:
    """Export the Lite0/1/2 stand-in ensemble as a model package (runs in a TensorFlow subprocess)."""
    import tensorflow as tf
    import tf2onnx

    from inference.package import member_entry, write_manifest
    from inference.preprocessing import ImageSpec, MetadataSpec

    metadata = MetadataSpec()
    folder.mkdir(parents=True, exist_ok=True)
    members = []
    for seed, (variant, size) in enumerate(STANDIN_VARIANTS):
        model = _keras_member(variant, size, metadata.size, seed)
        signature = (
            tf.TensorSpec((None, size, size, 3), tf.float32, name="image"),
            tf.TensorSpec((None, metadata.size), tf.float32, name="metadata"),
        )
        path = folder / f"{variant}.onnx"
        proto, _ = tf2onnx.convert.from_keras(
            model, input_signature=signature, opset=17, output_path=str(path)
        )
        members.append(
            member_entry(
                f"efficientnet_{variant}",
                path,
                ImageSpec(size=size, normalisation="lite"),
                proto.graph.output[0].name,
            )
        )
    write_manifest(
        folder,
        name="benchmark-standin",
        version="lite012-random",
        members=members,
        threshold=0.5,
        risk_bands={"medium": 0.5, "high": 0.8},
        training={"data": "none: random weights, for timing only"},
    )


def keras_baseline(package: Path, images: list[bytes]) -> dict:
    """Per request, as a Flask + Keras service does it: decode, preprocess, then ``model.predict`` on a batch
    of one for each member. Returns images/s (runs in a TensorFlow subprocess)."""
    from inference.package import read_manifest
    from inference.preprocessing import image_tensor, metadata_vector

    manifest, _ = read_manifest(package)
    # The architecture of each member: the training summary's backbone when the package records it
    # (members may be named lite0a, lite0b, ...), else the member's name (lite0, lite1, lite2).
    trained = json.loads((package / "manifest.json").read_text()).get("training", {}).get("members", {})
    models = []
    for seed, member in enumerate(manifest.members):
        backbone = (trained.get(member.name) or {}).get("backbone") or member.name
        variant = backbone.removeprefix("efficientnet_")
        try:
            models.append((member, _keras_member(variant, member.image.size, manifest.metadata.size, seed)))
        except (ValueError, ImportError) as exc:
            return {"keras_img_per_s": None, "note": f"no Keras architecture for member {member.name}: {exc}"}
    meta = metadata_vector(56, "female", "torso", manifest.metadata)[None]
    for member, model in models:  # the first predict traces the graph: not part of a steady request
        model.predict([image_tensor(images[0], member.image)[None], meta], verbose=0)
    started = time.perf_counter()
    for data in images:
        probabilities = [
            float(model.predict([image_tensor(data, member.image)[None], meta], verbose=0)[0, 0])
            for member, model in models
        ]
        assert all(0.0 <= p <= 1.0 for p in probabilities)
    elapsed = time.perf_counter() - started
    return {"keras_img_per_s": len(images) / elapsed, "keras_ms_per_request": 1000 * elapsed / len(images)}
