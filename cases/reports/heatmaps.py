"""The heatmap beside each image of the signed report: the image thumbnail with the stored overlay blended
over it, as a data URI (nothing is fetched while rendering). Printed by ``templates/reports/_heatmap.html``."""

import base64
import io
import logging

from PIL import Image, ImageOps

from cases.models import Prediction

logger = logging.getLogger(__name__)


def heatmap_thumbnail(image_bytes: bytes, prediction: Prediction | None, max_px: int = 360) -> str:
    """A JPEG data URI of the image with its prediction's heatmap over it, the size of the report's thumbnail
    (same aspect ratio); empty when the prediction has no map or the map cannot be read."""
    if prediction is None or not prediction.heatmap:
        return ""
    try:
        with prediction.heatmap.open("rb") as handle:
            overlay = Image.open(io.BytesIO(handle.read())).convert("RGBA")
        with Image.open(io.BytesIO(image_bytes)) as picture:
            base = ImageOps.exif_transpose(picture).convert("RGB")
    except OSError:  # a missing or unreadable map must not stop a signed report
        logger.warning("heatmap of %s unreadable; the report shows none", prediction)
        return ""
    base.thumbnail((max_px, max_px), Image.Resampling.LANCZOS)
    overlay = overlay.resize(base.size, Image.Resampling.BILINEAR)
    blended = Image.alpha_composite(base.convert("RGBA"), overlay).convert("RGB")
    out = io.BytesIO()
    blended.save(out, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode()
