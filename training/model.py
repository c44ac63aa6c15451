"""The dual-input model: EfficientNet image branch + small metadata MLP -> concatenate -> dropout -> dense.

Built from three parts so training can cache backbone features: ``backbone`` (image -> pooled features),
``head`` ((features, metadata) -> probability) and ``model`` (image, metadata -> probability), the graph that is
exported to ONNX. ``train_model`` puts the augmentation layers in front of the image branch (training only).
"""

from __future__ import annotations

from dataclasses import dataclass

from training.backbones import backbone_info, build_backbone


@dataclass
class DualModel:
    backbone: object
    head: object
    model: object
    train_model: object
    n_outputs: int  # columns the head is trained on (1, or one per class)


def build_head(
    feature_size: int,
    metadata_size: int,
    *,
    n_outputs: int = 1,
    dropout: float = 0.3,
    metadata_units: tuple[int, ...] = (32, 16),
    hidden: int = 0,
):
    import keras
    from keras import layers

    features = keras.Input(shape=(feature_size,), name="features")
    metadata = keras.Input(shape=(metadata_size,), name="metadata")
    m = metadata
    for i, units in enumerate(metadata_units):
        m = layers.Dense(units, activation="relu", name=f"meta_dense{i}")(m)
        m = layers.BatchNormalization(name=f"meta_bn{i}")(m)
    x = layers.Concatenate(name="concat")([features, m])
    x = layers.Dropout(dropout, name="dropout")(x)
    if hidden:
        x = layers.Dense(hidden, activation="relu", name="hidden")(x)
    activation = "sigmoid" if n_outputs == 1 else "softmax"
    out = layers.Dense(n_outputs, activation=activation, dtype="float32", name="probability")(x)
    return keras.Model([features, metadata], out, name="head")


def augmentation(
    normalisation: str,
    *,
    rotation: float = 0.5,
    zoom: float = 0.15,
    brightness: float = 0.15,
    contrast: float = 0.2,
    seed: int = 0,
):
    """The paper's augmentations: flips, rotation, zoom/scale, brightness/contrast (active in training only)."""
    import keras
    from keras import layers

    value_range = {"lite": (-1.0, 1.0), "unit": (0.0, 1.0), "raw": (0.0, 255.0)}.get(
        normalisation, (-3.0, 3.0)
    )
    return keras.Sequential(
        [
            layers.RandomFlip("horizontal_and_vertical", seed=seed),
            layers.RandomRotation(rotation, fill_mode="reflect", seed=seed + 1),
            layers.RandomZoom((-zoom, zoom), fill_mode="reflect", seed=seed + 2),
            layers.RandomBrightness(brightness, value_range=value_range, seed=seed + 3),
            layers.RandomContrast(contrast, value_range=value_range, seed=seed + 4),
        ],
        name="augment",
    )


def build_dual_model(
    backbone_name: str,
    *,
    image_size: int | None = None,
    metadata_size: int,
    weights: str | None = "imagenet",
    n_outputs: int = 1,
    dropout: float = 0.3,
    augment: bool = True,
    seed: int = 0,
    positive_classes: tuple[int, ...] | None = None,
) -> DualModel:
    """``positive_classes``: the head is trained over ``n_outputs`` classes (a softmax), but ``model`` (the
    exported graph) returns one column, the summed probability of these classes (P(malignant) from the seven
    diagnoses)."""
    import keras

    info = backbone_info(backbone_name)
    size = image_size or info.native_size
    backbone = build_backbone(backbone_name, image_size=size, weights=weights)
    head = build_head(int(backbone.output.shape[-1]), metadata_size, n_outputs=n_outputs, dropout=dropout)
    image = keras.Input(shape=(size, size, 3), name="image")
    metadata = keras.Input(shape=(metadata_size,), name="metadata")
    output = head([backbone(image), metadata])
    if positive_classes:
        output = positive_sum(output, n_outputs, positive_classes)
    model = keras.Model([image, metadata], output, name="teleder_member")
    augmented = augmentation(info.normalisation, seed=seed)(image) if augment else image
    train_model = keras.Model([image, metadata], head([backbone(augmented), metadata]), name="train_member")
    return DualModel(backbone, head, model, train_model, n_outputs)


def positive_sum(probabilities, n_classes: int, positive_classes: tuple[int, ...]):
    """A fixed (non-trainable) linear layer: the sum of the positive classes' probabilities, shape (N, 1).
    A plain Dense layer keeps the graph exportable by tf2onnx (a Lambda would not be)."""
    import numpy as np
    from keras import layers

    mask = np.zeros((n_classes, 1), np.float32)
    mask[list(positive_classes), 0] = 1.0
    layer = layers.Dense(1, use_bias=False, trainable=False, dtype="float32", name="positive_sum")
    output = layer(probabilities)
    layer.set_weights([mask])
    return output
