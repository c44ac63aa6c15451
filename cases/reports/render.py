"""Rendering a report to PDF with xhtml2pdf from ``templates/reports/report.html``.

``ReportContent`` holds everything printed, as plain values, so rendering needs no database (the service
builds it from a review; the benchmark builds it directly).
"""

import base64
import datetime as dt
import io
import re
from dataclasses import dataclass, field, fields, replace
from functools import cache
from pathlib import Path
from typing import BinaryIO

import qrcode
from django.template.loader import render_to_string
from PIL import Image, ImageOps
from xhtml2pdf import pisa
from xhtml2pdf.config.resources import ResourceAccessPolicy

THUMBNAIL_PX = 360
# The box each image is fitted into on the page, in points.
THUMBNAIL_BOX = (150, 112)
# A Unicode font (names, notes) when the system has one; xhtml2pdf falls back to Helvetica otherwise.
FONT_CANDIDATES = (
    (
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    ),
)


# Only spaces let xhtml2pdf wrap a line: longer unbroken tokens get one every this many characters.
LONGEST_TOKEN = 40
_LONG_TOKEN = re.compile(rf"\S{{{LONGEST_TOKEN + 1},}}")
_BLANK_LINES = re.compile(r"\n\s*\n(\s*\n)+")
# Printed as given: identifiers and the address a reader may type.
_VERBATIM = {"uid", "verification_url", "supersedes_uid"}


class RenderError(Exception):
    """xhtml2pdf could not produce the PDF."""


def probability_text(value: float | None) -> str:
    """Two decimals, but never a rounded 0.00 or 1.00: '< 0.01' and '> 0.99' say what is known."""
    if value is None:
        return ""
    if value < 0.01:
        return "< 0.01"
    if value > 0.99:
        return "> 0.99"
    return f"{value:.2f}"


@dataclass(frozen=True)
class ImageRow:
    position: int
    thumbnail: str  # data URI
    probability: float | None
    risk_band: str
    model_version: str
    width: int = 150  # points on the page, aspect ratio kept
    height: int = 112
    top_diagnoses: tuple[tuple[str, float], ...] = ()  # the AI differential's top three (label, probability)

    @property
    def probability_text(self) -> str:
        return probability_text(self.probability)

    not_assessed: str = ""  # the AI gate's plain sentence when the AI could not assess the image
    heatmap: str = ""  # data URI of the image with its heatmap over it (cases.reports.heatmaps); "" when none


@dataclass(frozen=True)
class ReportContent:
    uid: str
    organization: str
    case_id: int
    patient_reference: str
    age: int | None
    sex: str
    site: str
    lesion_label: str
    priority: str
    clinical_notes: str
    submitted_at: dt.datetime
    analysed_at: dt.datetime | None
    reviewed_at: dt.datetime
    signed_at: dt.datetime
    case_risk: float | None
    case_risk_band: str
    model_version: str
    diagnosis: str
    malignant: bool
    management: str
    follow_up_months: int | None
    notes: str
    agrees_with_ai: bool
    signer_name: str
    verification_url: str
    images: list[ImageRow] = field(default_factory=list)
    is_addendum: bool = False
    supersedes_uid: str = ""
    supersedes_signed_at: dt.datetime | None = None
    # What the report says about the AI (cases.review_rules.agreement_sentence); derived, never chosen.
    agreement: str = ""
    justification: str = ""
    correction_reason: str = ""
    referring_clinician: str = ""
    signer_credentials: str = ""
    signer_registration: str = ""
    follow_up_due: dt.date | None = None
    # (class label, probability) of the AI's multiclass output, highest first; empty when not available.
    differential: list[tuple[str, float]] = field(default_factory=list)
    ai_not_assessed: bool = False
    # Similar confirmed lesions per image: (position, ((diagnosis, source, cosine distance), ...)); no images.
    similar_lesions: list[tuple[int, tuple[tuple[str, str, float], ...]]] = field(default_factory=list)

    @property
    def case_risk_text(self) -> str:
        return probability_text(self.case_risk)

    @property
    def differential_text(self) -> list[tuple[str, str]]:
        return [(label, probability_text(p)) for label, p in self.differential]

    ai_assessment: str = ""  # "", assessed, partial or not_assessed (the AI safety gate)

    @property
    def has_heatmaps(self) -> bool:
        return any(row.heatmap for row in self.images)


@dataclass(frozen=True)
class Thumbnail:
    data_uri: str
    width: int  # points, fitted into THUMBNAIL_BOX
    height: int


def thumbnail(source: BinaryIO | Path | str, max_px: int = THUMBNAIL_PX) -> Thumbnail:
    """A small JPEG of an image as a data URI (large JPEGs are decoded at reduced scale)."""
    with Image.open(source) as image:
        image.draft("RGB", (max_px, max_px))
        image = ImageOps.exif_transpose(image).convert("RGB")
        image.thumbnail((max_px, max_px), Image.Resampling.LANCZOS)
        out = io.BytesIO()
        image.save(out, format="JPEG", quality=85)
        scale = min(THUMBNAIL_BOX[0] / image.width, THUMBNAIL_BOX[1] / image.height)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return Thumbnail("data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode(), *size)


def qr_data_uri(text: str) -> str:
    qr = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, box_size=6, border=2)
    qr.add_data(text)
    qr.make(fit=True)
    out = io.BytesIO()
    qr.make_image(fill_color="black", back_color="white").save(out)
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


@cache
def _fonts() -> tuple[str, str] | None:
    for regular, bold in FONT_CANDIDATES:
        if Path(regular).is_file() and Path(bold).is_file():
            return regular, bold
    return None


def wrappable(text: str) -> str:
    """Text that fits the page: long unbroken tokens split with spaces, runs of blank lines collapsed."""
    text = _BLANK_LINES.sub("\n\n", text.replace("\r\n", "\n").strip())
    return _LONG_TOKEN.sub(
        lambda m: " ".join(
            m.group(0)[i : i + LONGEST_TOKEN] for i in range(0, len(m.group(0)), LONGEST_TOKEN)
        ),
        text,
    )


def _printable(content: ReportContent) -> ReportContent:
    changes = {
        f.name: wrappable(getattr(content, f.name))
        for f in fields(content)
        if f.name not in _VERBATIM and isinstance(getattr(content, f.name), str)
    }
    return replace(content, **changes)


def report_html(content: ReportContent) -> str:
    return render_to_string(
        "reports/report.html",
        {"report": _printable(content), "qr": qr_data_uri(content.verification_url), "fonts": _fonts()},
    )


def _policy() -> ResourceAccessPolicy:
    # Nothing is fetched while rendering: images are data URIs; only the font folder may be read.
    fonts = _fonts()
    return ResourceAccessPolicy(
        allow_remote=False,
        base_dir=Path(fonts[0]).parent if fonts else None,
        max_render_seconds=60,
    )


def render_report_pdf(content: ReportContent) -> bytes:
    """The unsigned report PDF."""
    out = io.BytesIO()
    status = pisa.CreatePDF(report_html(content), dest=out, encoding="utf-8", resource_policy=_policy())
    if status.err:
        raise RenderError(f"The report could not be rendered ({status.err} errors).")
    return out.getvalue()
