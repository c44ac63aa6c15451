"""Small generated images for tests (the real data set never enters the test suite)."""

import io

import numpy as np
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image


def image_bytes(
    width: int = 64, height: int = 48, fmt: str = "JPEG", seed: int = 0, exif: bytes | None = None
) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, size=(height, width, 3), dtype=np.uint8)
    # A darker blob in the middle, like a lesion on skin.
    yy, xx = np.mgrid[0:height, 0:width]
    mask = ((yy - height / 2) ** 2 + (xx - width / 2) ** 2) < (min(width, height) / 3) ** 2
    pixels[mask] = pixels[mask] // 3
    out = io.BytesIO()
    kwargs = {"exif": exif} if exif else {}
    Image.fromarray(pixels).save(out, format=fmt, **kwargs)
    return out.getvalue()


def upload(
    name: str = "lesion.jpg", content: bytes | None = None, content_type: str = "image/jpeg", **kwargs
) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content if content is not None else image_bytes(**kwargs), content_type)
