"""Writes and audited exports of the interop area. The DICOM import goes through the one upload validator
(``cases.services.case_add_images`` -> ``cases.uploads.clean_image``): a DICOM file only contributes pixels."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from django.core.exceptions import ValidationError

from cases import services as case_services
from cases.audit import AuditAction, audit_record
from cases.models import Case, LesionImage, User
from interop import dicom, isic
from interop import selectors as interop_selectors


@dataclass(frozen=True)
class DicomExport:
    content: bytes
    filename: str
    instances: int


def _software_version() -> str:
    try:
        return f"TeleDerm {metadata.version('teleder')}"
    except metadata.PackageNotFoundError:
        return "TeleDerm"


def export_case(case: Case) -> dicom.ExportCase:
    patient = case.lesion.patient
    return dicom.ExportCase(
        pk=case.pk,
        organization_slug=case.organization.slug,
        created_at=case.created_at,
        patient_reference=patient.reference,
        patient_sex=case.sex_at_submission,
        age_at_submission=case.age_at_submission,
        site=case.site_at_submission,
        lesion_label=case.lesion.label,
        referrer_name=case.submitted_by.display_name,
        software_version=_software_version(),
    )


def export_images(case: Case) -> list[dicom.ExportImage]:
    return [
        dicom.ExportImage(
            content=interop_selectors.image_bytes(image),
            content_type=image.content_type,
            position=image.position,
            sha256=image.sha256,
            created_at=image.created_at,
        )
        for image in interop_selectors.case_images(case)
    ]


def dicom_export(*, actor: User, case: Case, via: str) -> DicomExport:
    """The case's images as VL Photographic Image objects in one ZIP; the download is audited. ``case`` must
    come from ``cases.selectors`` (visible to ``actor``)."""
    images = export_images(case)
    content = dicom.case_zip(export_case(case), images)
    audit_record(actor=actor, action=AuditAction.CASE_DICOM_EXPORT, obj=case, images=len(images), via=via)
    return DicomExport(content=content, filename=f"teleder-case-{case.pk}-dicom.zip", instances=len(images))


def _read_limited(upload: BinaryIO) -> bytes:
    limit = settings.TELEDER_MAX_IMAGE_BYTES
    if hasattr(upload, "seek"):
        upload.seek(0)
    data = upload.read(limit + 1)
    if len(data) > limit:
        raise ValidationError(
            {"file": f"The file is larger than {limit // (1024 * 1024)} MB."}, code="file_too_large"
        )
    return data


def dicom_import(*, actor: User, case: Case, upload: BinaryIO) -> list[LesionImage]:
    """Add a DICOM dermoscopy file's image to a case that is not analysed yet. The pixels are decoded and
    re-encoded; no DICOM attribute is kept. ValidationError (field ``file``) for anything refused; nothing is
    stored then."""
    data = _read_limited(upload)
    try:
        png = dicom.dicom_to_png(data, max_pixels=settings.TELEDER_MAX_IMAGE_PIXELS)
    except dicom.DicomRefused as exc:
        raise ValidationError({"file": str(exc)}, code=exc.code) from None
    image = io.BytesIO(png)
    image.name = "dicom-import.png"
    stored = case_services.case_add_images(actor=actor, case=case, images=[image])
    audit_record(actor=actor, action=AuditAction.CASE_DICOM_IMPORT, obj=case, images=len(stored))
    return stored


# ISIC-style CSV export ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class IsicExport:
    csv_path: Path
    cases: int
    rows: int


def isic_export(*, out_dir: Path, organization: str = "", with_images: bool = True) -> IsicExport:
    """Write ``metadata.csv`` (ISIC columns, values validated with the ISIC Archive's schema) and, unless
    ``with_images`` is false, the images under ``images/``, for every reported case (label: the current signed
    review). Ids are TeleDerm-made (``TD_<case>_<n>``, ``TDP_<patient>``, ``TDL_<lesion>``): the organization's
    patient references stay out of the data set. Each exported case is audited."""
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / "metadata.csv"
    if csv_path.exists():
        raise FileExistsError(f"{csv_path} exists already; choose an empty folder.")
    cases = interop_selectors.reported_cases(organization=organization)
    rows = n_cases = 0
    with csv_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=isic.EXPORT_COLUMNS)
        writer.writeheader()
        for case, review in cases:
            n_cases += 1
            for image in interop_selectors.case_images(case):
                isic_id = f"TD_{case.pk:07d}_{image.position + 1}"
                filename = f"images/{isic_id}.{'png' if image.content_type == 'image/png' else 'jpg'}"
                if with_images:
                    (out_dir / "images").mkdir(exist_ok=True)
                    (out_dir / filename).write_bytes(interop_selectors.image_bytes(image))
                writer.writerow(
                    isic.export_row(
                        isic_id=isic_id,
                        filename=filename,
                        patient_id=f"TDP_{case.lesion.patient_id}",
                        lesion_id=f"TDL_{case.lesion_id}",
                        age=case.age_at_submission,
                        sex=case.sex_at_submission,
                        site=case.site_at_submission,
                        diagnosis=review.diagnosis,
                        malignant=review.malignant,
                    )
                )
                rows += 1
            audit_record(actor=None, action=AuditAction.CASE_ISIC_EXPORT, obj=case, review=review.pk)
    return IsicExport(csv_path=csv_path, cases=n_cases, rows=rows)
