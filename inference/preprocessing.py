"""The one preprocessing path shared by training and inference (pure: Pillow + NumPy, no Django, no TF).

Training (``training.data``) and the workers (``inference.runtime``) both call :func:`image_tensor` and
:func:`metadata_vector` with the specs written in a model package's manifest, so the tensors a model sees in
production are the tensors it was trained on.

Layout: images are float32 NHWC (what Keras and tf2onnx use); metadata is float32 (N, metadata_size()).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from os import PathLike
from typing import BinaryIO, Literal

import numpy as np
from PIL import Image, ImageOps

SITES: tuple[str, ...] = (
    "head/neck",
    "upper extremity",
    "lower extremity",
    "torso",
    "palms/soles",
    "oral/genital",
)
SEXES: tuple[str, ...] = ("male", "female")
UNKNOWN_VALUES = frozenset({"", "unknown", "nan", "none", "null", "na", "n/a"})

ResizeMode = Literal["squash", "center_crop", "letterbox"]
Normalisation = Literal["lite", "imagenet", "unit", "raw"]
ColourCorrection = Literal["none", "shades_of_gray"]

_IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32) * 255.0
_IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32) * 255.0


class PreprocessingError(ValueError):
    """The input cannot be turned into a model tensor (unreadable image, impossible metadata)."""


@dataclass(frozen=True)
class ImageSpec:
    """How one ensemble member wants its image: size, resize mode and pixel normalisation.

    ``normalisation``: ``lite`` = (x - 127) / 128 (TF EfficientNet-Lite weights), ``imagenet`` = mean/std,
    ``unit`` = x / 255, ``raw`` = 0..255 floats (Keras EfficientNetB* include their own rescaling layer).
    ``colour``: ``shades_of_gray`` applies :func:`shades_of_gray` to the resized image (before normalisation);
    ``none`` leaves the colours as the camera took them.
    """

    size: int = 224
    resize: ResizeMode = "squash"
    normalisation: Normalisation = "lite"
    colour: ColourCorrection = "none"

    @classmethod
    def from_dict(cls, data: dict) -> ImageSpec:
        spec = cls(
            size=int(data.get("image_size", data.get("size", 224))),
            resize=data.get("resize", "squash"),
            normalisation=data.get("normalisation", "lite"),
            colour=data.get("colour", "none"),
        )
        spec.validate()
        return spec

    def to_dict(self) -> dict:
        out = {"image_size": self.size, "resize": self.resize, "normalisation": self.normalisation}
        if self.colour != "none":  # packages without colour correction keep their original manifest
            out["colour"] = self.colour
        return out

    def validate(self) -> None:
        if not 16 <= self.size <= 1024:
            raise PreprocessingError(f"image size {self.size} is outside 16..1024")
        if self.resize not in ("squash", "center_crop", "letterbox"):
            raise PreprocessingError(f"unknown resize mode {self.resize!r}")
        if self.normalisation not in ("lite", "imagenet", "unit", "raw"):
            raise PreprocessingError(f"unknown normalisation {self.normalisation!r}")
        if self.colour not in ("none", "shades_of_gray"):
            raise PreprocessingError(f"unknown colour correction {self.colour!r} (none or shades_of_gray)")


@dataclass(frozen=True)
class MetadataSpec:
    """Encoding of (age, sex, site): [age / age_scale, age_missing, one-hot sex, sex_missing,
    one-hot site, site_missing]. Unknown values are explicit indicator features, never silently zero."""

    age_scale: float = 100.0
    sexes: tuple[str, ...] = SEXES
    sites: tuple[str, ...] = SITES
    extra: dict = field(default_factory=dict, compare=False)

    @classmethod
    def from_dict(cls, data: dict) -> MetadataSpec:
        return cls(
            age_scale=float(data.get("age_scale", 100.0)),
            sexes=tuple(data.get("sexes", SEXES)),
            sites=tuple(data.get("sites", SITES)),
        )

    def to_dict(self) -> dict:
        return {
            "age_scale": self.age_scale,
            "sexes": list(self.sexes),
            "sites": list(self.sites),
            "size": self.size,
        }

    @property
    def size(self) -> int:
        return 2 + len(self.sexes) + 1 + len(self.sites) + 1


def load_image(source: bytes | str | PathLike | BinaryIO | Image.Image) -> Image.Image:
    """Decode an image, apply its EXIF orientation and convert it to RGB."""
    if isinstance(source, Image.Image):
        image = source
    else:
        try:
            if isinstance(source, bytes | bytearray):
                source = io.BytesIO(source)
            image = Image.open(source)
            image.load()
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            raise PreprocessingError(f"unreadable image: {exc}") from exc
    image = ImageOps.exif_transpose(image)
    if image.mode != "RGB":
        image = image.convert("RGB")
    return image


def resize_image(image: Image.Image, spec: ImageSpec) -> Image.Image:
    size = spec.size
    if spec.resize == "squash":
        return image.resize((size, size), Image.Resampling.BILINEAR)
    if spec.resize == "center_crop":
        return ImageOps.fit(image, (size, size), Image.Resampling.BILINEAR)
    canvas = Image.new("RGB", (size, size), (0, 0, 0))
    fitted = ImageOps.contain(image, (size, size), Image.Resampling.BILINEAR)
    canvas.paste(fitted, ((size - fitted.width) // 2, (size - fitted.height) // 2))
    return canvas


def shades_of_gray(pixels: np.ndarray, power: int = 6) -> np.ndarray:
    """Shades-of-Gray colour constancy (Finlayson and Trezzi 2004) on one uint8 (H, W, 3) image.

    Dermoscopes and cameras differ in their light and white balance, and in a set that mixes sources the
    colour cast tells the source (and so, partly, the label) instead of the lesion. Each channel is scaled so
    that its Minkowski p-norm (p = 6: between the grey world, p = 1, and max-RGB, p = infinity) equals the
    mean over the three channels; the image's overall brightness is kept.
    """
    x = pixels.astype(np.float32)
    norms = np.power(np.mean(np.power(x / 255.0, power), axis=(0, 1)), 1.0 / power)
    gains = norms.mean() / np.maximum(norms, 1e-6)
    return np.clip(np.rint(x * gains), 0, 255).astype(np.uint8)


def image_pixels(image: Image.Image, spec: ImageSpec) -> np.ndarray:
    """The resized (and, per ``spec.colour``, colour-corrected) image as uint8 (size, size, 3): the stage that
    training caches; :func:`normalise` turns it into the model's input."""
    pixels = np.asarray(resize_image(image, spec), dtype=np.uint8)
    if spec.colour == "shades_of_gray":
        pixels = shades_of_gray(pixels)
    return pixels


def normalise(pixels: np.ndarray, normalisation: Normalisation) -> np.ndarray:
    """Map uint8/float 0..255 pixels (..., 3) to the member's input range, as float32."""
    x = pixels.astype(np.float32)
    if normalisation == "lite":
        return (x - 127.0) / 128.0
    if normalisation == "imagenet":
        return (x - _IMAGENET_MEAN) / _IMAGENET_STD
    if normalisation == "unit":
        return x / 255.0
    return x


def image_tensor(source: bytes | str | PathLike | BinaryIO | Image.Image, spec: ImageSpec) -> np.ndarray:
    """One image as a float32 (size, size, 3) array, ready for the member described by ``spec``."""
    return normalise(image_pixels(load_image(source), spec), spec.normalisation)


def _is_unknown(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value.strip().lower() in UNKNOWN_VALUES


def metadata_vector(
    age: float | int | str | None, sex: str | None, site: str | None, spec: MetadataSpec | None = None
) -> np.ndarray:
    """Encode (age, sex, site) for the metadata branch. Unknown or blank values set their ``missing`` flag;
    an age outside 0..120 or a value outside the vocabulary is an error, not a silent default."""
    spec = spec or MetadataSpec()
    vector = np.zeros(spec.size, dtype=np.float32)
    if _is_unknown(age):
        vector[1] = 1.0
    else:
        try:
            age_value = float(age)
        except (TypeError, ValueError) as exc:
            raise PreprocessingError(f"age {age!r} is not a number") from exc
        if not 0 <= age_value <= 120:
            raise PreprocessingError(f"age {age_value:g} is outside 0..120")
        vector[0] = age_value / spec.age_scale
    offset = 2
    if _is_unknown(sex):
        vector[offset + len(spec.sexes)] = 1.0
    else:
        normalised = str(sex).strip().lower()
        if normalised not in spec.sexes:
            raise PreprocessingError(f"sex {sex!r} is not one of {', '.join(spec.sexes)} or unknown")
        vector[offset + spec.sexes.index(normalised)] = 1.0
    offset += len(spec.sexes) + 1
    if _is_unknown(site):
        vector[offset + len(spec.sites)] = 1.0
    else:
        normalised = str(site).strip().lower()
        if normalised not in spec.sites:
            raise PreprocessingError(f"anatomical site {site!r} is not in the ISIC vocabulary")
        vector[offset + spec.sites.index(normalised)] = 1.0
    return vector


def hflip(batch: np.ndarray) -> np.ndarray:
    """Horizontal flip of an NHWC batch (test-time augmentation)."""
    return batch[:, :, ::-1, :]
