"""Writes and audited exports of the interop area. The DICOM import goes through the one upload validator
(``cases.services.case_add_images`` -> ``cases.uploads.clean_image``): a DICOM file only contributes pixels."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import BinaryIO

from django.conf import settings
from django.core.exceptions import ValidationError

from cases import services as case_services
from cases.audit import audit_record
from cases.models import Case, LesionImage, User
from interop import dicom
from interop import selectors as interop_selectors


@dataclass(frozen=True)
class DicomExport:
    content: bytes
    filename: str
    instances: int


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
        software_version=str(case.model_version) if case.model_version_id else "",
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
    audit_record(actor=actor, action="case.dicom_export", obj=case, images=len(images), via=via)
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
    audit_record(actor=actor, action="case.dicom_import", obj=case, images=len(stored))
    return stored
