"""The one upload validator for the web forms and the API (OWASP ASVS 5.0, section 5.2).

An upload is accepted only if its magic bytes say JPEG or PNG, Pillow decodes all of it within the pixel
limit, and it re-encodes cleanly. What is stored is the re-encoded image: EXIF, GPS, comments and anything
appended to the file are gone, and the client's file name is never used.
"""

import hashlib
import io
import re
import warnings
import zipfile
from dataclasses import dataclass
from typing import BinaryIO

from django.conf import settings
from django.core.exceptions import ValidationError
from PIL import Image, ImageOps

from cases.refusals import image_too_large

_MAGIC = {
    b"\xff\xd8\xff": ("JPEG", "image/jpeg"),
    b"\x89PNG\r\n\x1a\n": ("PNG", "image/png"),
}
MIN_SIDE_PX = 32
# Polyglots: markup that a browser or an interpreter would run, anywhere in the file (ASVS 5.2.x).
_MARKUP = re.compile(rb"<\s*(?:script|html|body|iframe|object|embed|svg)\b|<\?php", re.IGNORECASE)


@dataclass(frozen=True)
class CleanImage:
    content: bytes
    content_type: str
    width: int
    height: int
    sha256: str

    @property
    def extension(self) -> str:
        return "png" if self.content_type == "image/png" else "jpg"


def _read_limited(upload: BinaryIO, limit: int) -> bytes:
    if hasattr(upload, "seek"):
        upload.seek(0)
    data = upload.read(limit + 1)
    if len(data) > limit:
        raise ValidationError(image_too_large(limit), code="file_too_large")
    return data


def _refuse_embedded_content(data: bytes, name: str) -> None:
    """An image that is also a web page or an archive is refused outright, not just re-encoded."""
    if zipfile.is_zipfile(io.BytesIO(data)):
        raise ValidationError(
            f"{name} has an archive (ZIP) hidden in it and was refused.", code="embedded_archive"
        )
    if _MARKUP.search(data):
        raise ValidationError(
            f"{name} contains embedded HTML or script and was refused.", code="embedded_markup"
        )


def clean_image(upload: BinaryIO, *, name: str = "image") -> CleanImage:
    """Validate one uploaded image and return its re-encoded, metadata-free bytes.

    Raises ``ValidationError`` with a message a clinician can act on; nothing is stored here.
    """
    data = _read_limited(upload, settings.TELEDER_MAX_IMAGE_BYTES)
    if not data:
        raise ValidationError(f"{name} is empty.", code="empty_file")
    detected = next(((fmt, ctype) for magic, (fmt, ctype) in _MAGIC.items() if data.startswith(magic)), None)
    if detected is None:
        raise ValidationError(f"{name} is not a JPEG or PNG image.", code="unsupported_type")
    expected_format, content_type = detected
    _refuse_embedded_content(data, name)

    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data), formats=[expected_format]) as probe:
                width, height = probe.size
                if width * height > settings.TELEDER_MAX_IMAGE_PIXELS:
                    raise ValidationError(
                        f"{name} has too many pixels ({width}x{height}); the limit is "
                        f"{settings.TELEDER_MAX_IMAGE_PIXELS:,}.",
                        code="too_many_pixels",
                    )
                probe.load()
                image = ImageOps.exif_transpose(probe)
                image = image.convert("RGB")
        except ValidationError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ValidationError(
                f"{name} is too large to decode safely.", code="decompression_bomb"
            ) from exc
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise ValidationError(
                f"{name} is damaged or truncated and cannot be read.", code="corrupt_image"
            ) from exc

    if min(image.size) < MIN_SIDE_PX:
        raise ValidationError(
            f"{name} is too small ({image.width}x{image.height}); images need at least {MIN_SIDE_PX} px per side.",
            code="too_small",
        )
    out = io.BytesIO()
    if content_type == "image/png":
        image.save(out, format="PNG", optimize=False)
    else:
        image.save(out, format="JPEG", quality=95, subsampling=0)
    content = out.getvalue()
    return CleanImage(
        content=content,
        content_type=content_type,
        width=image.width,
        height=image.height,
        sha256=hashlib.sha256(content).hexdigest(),
    )
