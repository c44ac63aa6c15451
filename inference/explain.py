"""Heatmaps of "where the model looked" (pure: numpy and Pillow, no Django).

Members that declare ``outputs.cam`` (``training.cam`` adds it to the graph) return, in the same session run
as their probability, the Grad-CAM of P(malignant) on their backbone's grid, shape (views, H, W). Here the
horizontally flipped TTA view's map is flipped back, the views are averaged, the members' maps (different
grids: 7x7 for EfficientNet-Lite0 at 224 px, 9x9 for Lite2 at 260 px) are resized to the finest grid and
averaged with the ensemble's weights, and each image's map is scaled to [0, 1]. :func:`overlay_png` turns one
map into the PNG overlay the pages, the API and the report show.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

CAM_KEY = "cam"
# Members whose image is squashed to a square show the whole picture, so their grid maps onto the image by
# stretching. A center crop or letterbox would need the crop box; such members are left out of the map.
MAPPABLE_RESIZE = ("squash",)

# A perceptually ordered colour ramp (dark blue -> cyan -> yellow -> red), alpha rising with the value so
# that cold areas leave the image visible.
_STOPS = np.array([0.0, 0.35, 0.65, 1.0])
_COLOURS = np.array([[30, 60, 200], [0, 200, 220], [250, 220, 0], [230, 20, 20]], dtype=np.float64)
_MAX_ALPHA = 200


def member_map(raw: np.ndarray, n: int, *, tta_hflip: bool) -> np.ndarray:
    """One member's map per image, (n, H, W): the flipped views (rows n..2n) flipped back and averaged with
    the plain ones. Raises ValueError for a map of the wrong shape or with non-finite values."""
    array = np.asarray(raw, dtype=np.float64)
    rows = 2 * n if tta_hflip else n
    if array.ndim != 3 or array.shape[0] != rows or not np.all(np.isfinite(array)):
        raise ValueError(f"a map of shape {list(array.shape)} or with non-finite values (batch of {rows})")
    if tta_hflip:
        return (array[:n] + array[n:, :, ::-1]) / 2.0
    return array


def resize_map(grid: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of one 2-D map."""
    if grid.shape == (height, width):
        return grid.astype(np.float64)
    image = Image.fromarray(grid.astype(np.float32), mode="F")
    return np.asarray(image.resize((width, height), Image.Resampling.BILINEAR), dtype=np.float64)


def normalise(grid: np.ndarray) -> np.ndarray:
    """Scale to [0, 1] by the map's maximum (all zeros stays all zeros: nothing raised the score)."""
    top = float(grid.max()) if grid.size else 0.0
    return grid / top if top > 0 else np.zeros_like(grid)


def combine_maps(weighted: list[tuple[float, np.ndarray]]) -> list[np.ndarray] | None:
    """Weighted mean over members of (n, H, W) maps, each resized to the finest member grid, then each
    image's map normalised to [0, 1]. None when no member gave a map."""
    if not weighted:
        return None
    height = max(m.shape[1] for _, m in weighted)
    width = max(m.shape[2] for _, m in weighted)
    total = sum(w for w, _ in weighted)
    n = weighted[0][1].shape[0]
    out = []
    for i in range(n):
        mean = sum(w * resize_map(m[i], height, width) for w, m in weighted) / total
        out.append(normalise(mean))
    return out


def colourise(grid: np.ndarray) -> np.ndarray:
    """(H, W) values in [0, 1] -> (H, W, 4) uint8 RGBA."""
    values = np.clip(grid, 0.0, 1.0)
    rgb = np.stack([np.interp(values, _STOPS, _COLOURS[:, k]) for k in range(3)], axis=-1)
    alpha = _MAX_ALPHA * values**0.8
    return np.concatenate([rgb, alpha[..., None]], axis=-1).round().astype(np.uint8)


def overlay_png(grid: np.ndarray, width: int, height: int, *, longest: int = 320) -> bytes:
    """The map as a PNG overlay with the image's aspect ratio (longest side ``longest`` px): bilinear upsampling
    of the model's grid, a colour ramp and an alpha that rises with the value."""
    scale = longest / max(width, height, 1)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    upsampled = resize_map(np.asarray(grid, dtype=np.float64), size[1], size[0])
    buffer = io.BytesIO()
    Image.fromarray(colourise(upsampled), mode="RGBA").save(buffer, format="PNG", compress_level=3)
    return buffer.getvalue()
