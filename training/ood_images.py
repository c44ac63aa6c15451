"""Generated images that are not usable dermoscopy, for the AI gate's tests and measurements (Pillow + NumPy).

Nothing is downloaded: every image is drawn from a seed. Kinds: flat colours, noise, text pages, portrait-like
drawings (a face on a background), object-like scenes, UI screenshots, charts. ``degrade`` makes badly taken
dermoscopy out of a real image (strong blur, very dark, burnt out).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

KINDS = ("flat", "noise", "text", "portrait", "object", "screenshot", "chart")
DEGRADATIONS = ("blur", "dark", "burnt_out")


def _rng_colour(rng) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(0, 256, 3))


def _size(rng) -> tuple[int, int]:
    return int(rng.choice([320, 480, 640, 800])), int(rng.choice([240, 360, 480, 600]))


def _text_lines(draw, rng, box, colour, line_h: int) -> None:
    x0, y0, x1, y1 = box
    y = y0
    while y < y1 - line_h:
        x = x0
        while x < x1 - 20:
            word = int(rng.integers(10, 60))
            draw.rectangle((x, y, min(x1, x + word), y + line_h // 2), fill=colour)
            x += word + int(rng.integers(6, 14))
        y += line_h


def generate(kind: str, seed: int) -> Image.Image:
    """One generated non-dermoscopy image of ``kind``."""
    rng = np.random.default_rng([KINDS.index(kind), seed])
    w, h = _size(rng)
    if kind == "flat":
        return Image.new("RGB", (w, h), _rng_colour(rng))
    if kind == "noise":
        if rng.random() < 0.5:
            return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        small = rng.integers(0, 256, (h // 16 + 1, w // 16 + 1, 3), dtype=np.uint8)
        return Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC)
    image = Image.new("RGB", (w, h), (245, 245, 240))
    draw = ImageDraw.Draw(image)
    if kind == "text":  # a photographed page: grey-ish paper, lines of "words", a slight shadow
        paper = int(rng.integers(180, 250))
        image = Image.new("RGB", (w, h), (paper, paper, paper - int(rng.integers(0, 20))))
        draw = ImageDraw.Draw(image)
        _text_lines(draw, rng, (20, 20, w - 20, h - 20), (30, 30, 30), int(rng.integers(10, 22)))
        for i in range(0, 200, 40):
            draw.text((25, 25 + i), "Lorem ipsum dolor sit amet " * 3, fill=(20, 20, 20))
        return image.filter(ImageFilter.GaussianBlur(0.6))
    if kind == "portrait":  # a face-like oval with eyes, mouth and hair on a background
        image = Image.new("RGB", (w, h), _rng_colour(rng))
        draw = ImageDraw.Draw(image)
        skin = (int(rng.integers(120, 240)), int(rng.integers(90, 200)), int(rng.integers(70, 170)))
        cx, cy, r = w // 2, h // 2, min(w, h) // 3
        draw.rectangle((cx - 2 * r, cy + r, cx + 2 * r, h), fill=_rng_colour(rng))  # shoulders
        draw.ellipse((cx - r, cy - int(1.3 * r), cx + r, cy + int(1.1 * r)), fill=skin)
        draw.chord((cx - r, cy - int(1.4 * r), cx + r, cy), 180, 360, fill=_rng_colour(rng))  # hair
        for dx in (-r // 2, r // 2):
            draw.ellipse((cx + dx - r // 8, cy - r // 6, cx + dx + r // 8, cy), fill=(40, 30, 30))
        draw.arc((cx - r // 3, cy + r // 4, cx + r // 3, cy + r // 2), 0, 180, fill=(150, 40, 40), width=4)
        return image.filter(ImageFilter.GaussianBlur(1.0))
    if kind == "object":  # a few shaded shapes on a table-like two-tone background
        top, bottom = _rng_colour(rng), _rng_colour(rng)
        draw.rectangle((0, 0, w, h // 2), fill=top)
        draw.rectangle((0, h // 2, w, h), fill=bottom)
        for _ in range(int(rng.integers(2, 6))):
            x, y = int(rng.integers(0, w)), int(rng.integers(h // 3, h))
            s = int(rng.integers(20, min(w, h) // 2))
            shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
            shape((x - s, y - s, x + s, y + s // 2), fill=_rng_colour(rng), outline=(0, 0, 0))
        return image.filter(ImageFilter.GaussianBlur(0.8))
    if kind == "screenshot":  # an app/web page: title bar, sidebar, buttons, text
        draw.rectangle((0, 0, w, 40), fill=_rng_colour(rng))
        draw.rectangle((0, 40, w // 4, h), fill=(230, 232, 236))
        for i in range(5):
            draw.rectangle((w // 4 + 20, 60 + i * 50, w // 4 + 140, 90 + i * 50), fill=_rng_colour(rng))
        _text_lines(draw, rng, (w // 4 + 160, 60, w - 10, h - 10), (60, 60, 60), 16)
        draw.text((10, 12), "TeleDerm - Cases", fill=(255, 255, 255))
        return image
    # chart: axes, a few coloured series and a legend
    draw.line((40, h - 30, w - 10, h - 30), fill=(0, 0, 0), width=2)
    draw.line((40, 10, 40, h - 30), fill=(0, 0, 0), width=2)
    for _ in range(int(rng.integers(1, 4))):
        ys = np.cumsum(rng.normal(0, 12, 20)) + h / 2
        points = [(40 + i * (w - 60) / 19, float(np.clip(y, 15, h - 35))) for i, y in enumerate(ys)]
        draw.line(points, fill=_rng_colour(rng), width=3)
    return image


def degrade(image: Image.Image, kind: str) -> Image.Image:
    """A badly taken version of a real dermoscopic image: ``blur`` (Gaussian, 2 % of the short side),
    ``dark`` (x0.2 brightness) or ``burnt_out`` (x4 brightness)."""
    image = image.convert("RGB")
    if kind == "blur":
        return image.filter(ImageFilter.GaussianBlur(max(1.0, 0.02 * min(image.size))))
    if kind == "dark":
        return ImageEnhance.Brightness(image).enhance(0.2)
    if kind == "burnt_out":
        return ImageEnhance.Brightness(image).enhance(4.0)
    raise ValueError(f"unknown degradation {kind!r} ({', '.join(DEGRADATIONS)})")


def write_set(folder: Path, per_kind: int, *, seed: int = 0) -> list[Path]:
    """Write ``per_kind`` images of every kind as ``folder/<kind>/<n>.png`` (the folder layout evaluate-gate
    reads: the first folder level is the source)."""
    paths = []
    for kind in KINDS:
        (Path(folder) / kind).mkdir(parents=True, exist_ok=True)
        for i in range(per_kind):
            path = Path(folder) / kind / f"{i:04d}.png"
            generate(kind, seed * 100_000 + i).save(path)
            paths.append(path)
    return paths
