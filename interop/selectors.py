"""Reads for the interop exports. Every case comes through ``cases.selectors`` (another organization's case is
a 404); this module only loads what the FHIR and DICOM mappers need, in a fixed number of queries."""

from __future__ import annotations

import hashlib
import logging

from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.urls import reverse

from cases import selectors
from cases.models import Case, LesionImage, Prediction, Report, Review, User
from interop.fhir import CaseRecord

logger = logging.getLogger(__name__)


class NotReported(ValidationError):
    """The case has no signed report yet: there is no result to exchange (HTTP 409)."""


class StoredFileCorrupt(Exception):
    """A stored report or image no longer matches the sha256 recorded when it was stored."""


def _read(field_file) -> bytes:
    with field_file.open("rb") as handle:
        return handle.read()


def report_pdf(report: Report) -> bytes:
    content = _read(report.file)
    if hashlib.sha256(content).hexdigest() != report.sha256:
        logger.critical("stored report %s does not match its recorded sha256", report.uid)
        raise StoredFileCorrupt(f"The stored file of report {report.uid} failed its integrity check.")
    return content


def case_images(case: Case) -> list[LesionImage]:
    return list(LesionImage.objects.filter(case=case).order_by("position"))


def image_bytes(image: LesionImage) -> bytes:
    content = _read(image.file)
    if hashlib.sha256(content).hexdigest() != image.sha256:
        logger.critical("stored image %s does not match its recorded sha256", image.pk)
        raise StoredFileCorrupt(f"The stored file of image {image.position + 1} failed its integrity check.")
    return content


def case_record(
    case: Case, *, with_pdf: bool = True, base_url: str = "", reports: list[Report] | None = None
) -> CaseRecord:
    """What the FHIR mapper needs for one visible case. NotReported if it has no signed report."""
    if reports is None:
        reports = list(
            Report.objects.filter(case=case).select_related("signer", "review").order_by("created_at", "pk")
        )
    if not reports:
        raise NotReported(
            {"case": f"Case {case.pk} has no signed report yet; FHIR results exist once it is reported."},
            code="not_reported",
        )
    current = reports[-1]
    images = case_images(case)
    predictions = {}
    if case.model_version_id:
        predictions = {
            p.image_id: p
            for p in Prediction.objects.filter(image__case=case, model_version_id=case.model_version_id)
            .select_related("model_version")
            .order_by("pk")
        }
    return CaseRecord(
        case=case,
        report=current,
        review=current.review,
        reports=reports,
        images=images,
        predictions=predictions,
        pdf=report_pdf(current) if with_pdf else None,
        pdf_url=f"{base_url}{reverse('api:report-download', kwargs={'uid': current.uid})}",
        image_urls={
            image.pk: f"{base_url}{reverse('case_image', kwargs={'case_id': case.pk, 'image_id': image.pk})}"
            for image in images
        },
    )


def fhir_case(user: User, case_id: int | str, *, base_url: str = "") -> CaseRecord:
    """The visible case's record (Http404 for another organization's case, NotReported before a report)."""
    return case_record(selectors.case_get(user, case_id), base_url=base_url)


def reported_cases_of_patient(user: User, patient_id: int) -> QuerySet[Case]:
    """Visible cases of one visible patient that have a signed report, newest first."""
    patient = selectors.patient_get(user, patient_id)
    return (
        selectors.cases_visible_to(user)
        .filter(lesion__patient=patient, reports__isnull=False)
        .select_related("lesion__patient__organization", "submitted_by", "model_version")
        .distinct()
        .order_by("-created_at", "-pk")
    )


def reported_cases(*, organization: str = "") -> list[tuple[Case, Review]]:
    """Every reported case (optionally of one organization, by slug) with its current signed review, oldest
    first. For exports run by operators (management commands), not for users: no visibility filter."""
    cases = (
        Case.objects.filter(reports__isnull=False)
        .select_related("lesion__patient", "organization")
        .distinct()
        .order_by("pk")
    )
    if organization:
        cases = cases.filter(organization__slug=organization)
    out = []
    for case in cases:
        report = (
            Report.objects.filter(case=case).select_related("review").order_by("-created_at", "-pk").first()
        )
        out.append((case, report.review))
    return out
