"""Writes of the reports area: generate (render, sign, store once) and download (with the audit trail)."""

import calendar
import datetime as dt
import hashlib
import io
import logging
import uuid
from dataclasses import dataclass

from django.apps import apps
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import Prefetch
from django.urls import reverse
from django.utils import timezone
from django.utils.module_loading import import_string

from cases import review_rules
from cases.audit import AuditAction, audit_record
from cases.models import Case, CaseStatus, Prediction, Report, Review, User
from cases.reports import render, signing
from cases.reports.heatmaps import heatmap_thumbnail
from cases.reports.verify import VALID, check_signature
from cases.selectors import current_review, report_get
from cases.services import IllegalTransition, case_mark_reported
from cases.services.queue import enqueue_report
from cases.vocabulary import Diagnosis
from teleder.storage import file_sha256

logger = logging.getLogger(__name__)


class ReportIntegrityError(Exception):
    """A stored report file no longer matches the sha256 recorded when it was signed."""


def verification_url(uid: uuid.UUID | str) -> str:
    return f"{settings.SITE_URL}{reverse('report_verify')}?report={uid}"


def _image_rows(case: Case) -> list[render.ImageRow]:
    rows = []
    predictions = Prediction.objects.select_related("model_version").order_by("-created_at")
    for image in case.images.prefetch_related(Prefetch("predictions", predictions)).order_by("position"):
        candidates = list(image.predictions.all())
        prediction = next((p for p in candidates if p.model_version_id == case.model_version_id), None)
        prediction = prediction or (candidates[0] if candidates else None)
        with image.file.open("rb") as handle:
            content = handle.read()
        thumb = render.thumbnail(io.BytesIO(content))
        rows.append(
            render.ImageRow(
                position=image.position + 1,
                thumbnail=thumb.data_uri,
                probability=prediction.probability if prediction else None,
                risk_band=prediction.risk_band if prediction else "",
                model_version=str(prediction.model_version) if prediction else "",
                width=thumb.width,
                height=thumb.height,
                top_diagnoses=tuple(prediction.top_diagnoses()) if prediction else (),
                not_assessed=prediction.explanation if prediction else "",
                heatmap=heatmap_thumbnail(content, prediction),
            )
        )
    return rows


# The similarity app sits above cases: the report knows its one function by name, as the cases know the
# analysis task by name.
SIMILAR_FOR_REPORT = "similarity.report.similar_for_report"


def _similar_lesions(case: Case) -> list:
    if not apps.is_installed("similarity"):
        return []
    return import_string(SIMILAR_FOR_REPORT)(case)


def add_months(day: dt.date, months: int) -> dt.date:
    """The same day ``months`` later (the month's last day when it has fewer days)."""
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def _differential(case: Case, top: int = 3) -> list[tuple[str, float]]:
    """The multiclass output of the image with the highest risk, when the model gives one."""
    prediction = (
        Prediction.objects.filter(image__case=case, model_version_id=case.model_version_id)
        .order_by("-probability", "image__position")
        .first()
    )
    if prediction is None or not prediction.class_probabilities:
        return []
    labels = dict(Diagnosis.choices)
    ranked = sorted(prediction.class_probabilities.items(), key=lambda item: -float(item[1]))[:top]
    return [(labels.get(name, name), float(p)) for name, p in ranked]


def report_content(
    review: Review, *, uid: uuid.UUID, signed_at, supersedes: Report | None = None
) -> render.ReportContent:
    """Everything the PDF prints, read from the review, its case and the previous report."""
    case = review.case
    lesion = case.lesion
    signer = review.reviewer
    follow_up_due = (
        add_months(timezone.localtime(review.created_at).date(), review.follow_up_months)
        if review.follow_up_months
        else None
    )
    return render.ReportContent(
        uid=str(uid),
        organization=case.organization.name,
        case_id=case.pk,
        patient_reference=lesion.patient.reference,
        age=case.age_at_submission,
        sex=case.get_sex_at_submission_display(),
        site=case.get_site_at_submission_display(),
        lesion_label=lesion.label,
        priority=case.get_priority_display(),
        clinical_notes=case.clinical_notes,
        submitted_at=case.created_at,
        analysed_at=case.analysed_at,
        reviewed_at=review.created_at,
        signed_at=signed_at,
        case_risk=case.risk,
        case_risk_band=case.risk_band,
        ai_assessment=case.ai_assessment,
        model_version=str(case.model_version) if case.model_version_id else "",
        diagnosis=review.get_diagnosis_display(),
        malignant=review.malignant,
        management=review.get_management_display(),
        follow_up_months=review.follow_up_months,
        notes=review.notes,
        agrees_with_ai=review.agrees_with_ai,
        signer_name=review.reviewer.display_name,
        verification_url=verification_url(uid),
        images=_image_rows(case),
        is_addendum=supersedes is not None,
        supersedes_uid=str(supersedes.uid) if supersedes else "",
        supersedes_signed_at=supersedes.signed_at if supersedes else None,
        agreement=review_rules.agreement_sentence(flagged=review.ai_flagged, malignant=review.malignant),
        justification=review.justification,
        correction_reason=review.correction_reason,
        referring_clinician=case.submitted_by.display_name,
        signer_credentials=signer.credentials,
        signer_registration=signer.registration_number,
        follow_up_due=follow_up_due,
        differential=_differential(case),
        ai_not_assessed=case.risk is None and case.analysed_at is not None,
        similar_lesions=_similar_lesions(case),
    )


def _previous_report(case: Case) -> Report | None:
    """The case's latest report that no addendum has replaced yet."""
    return Report.objects.filter(case=case, addendum__isnull=True).order_by("-created_at", "-pk").first()


def report_generate(*, review_id: int) -> Report:
    """Render, sign and store the report of a review, then move its case to reported.

    Idempotent: a review that already has a report gets that report back (a repeated task delivery).
    A review that corrects an earlier one gets an addendum that references the case's previous report.
    Rendering and signing happen outside the database transaction; the row, the audit event and the
    status change are written together, after the signed file is stored under a new, never reused name.
    """
    review = Review.objects.select_related(
        "case__organization", "case__lesion__patient", "case__model_version", "case__submitted_by", "reviewer"
    ).get(pk=review_id)
    existing = Report.objects.filter(review=review).first()
    if existing is not None:
        return existing
    case = review.case
    if Review.objects.filter(supersedes=review).exists():
        raise ValidationError("This review was corrected by a later one; only the latest gets a report.")
    if case.status != CaseStatus.REVIEWED:
        raise IllegalTransition(
            f"Case {case.pk} is {case.get_status_display().lower()}, not reviewed: nothing to report.",
            code="illegal_transition",
        )
    previous = _previous_report(case) if review.supersedes_id else None
    uid = uuid.uuid4()
    signer = review.reviewer
    content = report_content(review, uid=uid, signed_at=timezone.now(), supersedes=previous)
    pdf = render.render_report_pdf(content)
    reason = (
        f"Addendum to report {previous.uid} for case {case.pk}"
        if previous
        else f"Dermatology report, case {case.pk}"
    )
    signed = signing.sign_pdf(
        pdf,
        subject=signing.SignerSubject(user_id=signer.pk, name=signer.display_name, email=signer.email),
        reason=reason,
        location=case.organization.name,
    )
    # Check our own signature before storing: a misconfigured key or trust root must not reach a patient.
    check = check_signature(signed)
    if check.status != VALID:
        raise signing.SigningError(f"The signed report does not validate: {check.message}")
    signed_at = check.signature.get("signed_at") or content.signed_at
    digest = hashlib.sha256(signed).hexdigest()

    with transaction.atomic():
        case = Case.objects.select_for_update().get(pk=case.pk)
        existing = Report.objects.filter(review=review).first()
        if existing is not None:  # another worker stored it while we were signing
            return existing
        if review.supersedes_id:
            previous = _previous_report(case)
        report = Report(
            uid=uid,
            case=case,
            review=review,
            sha256=digest,
            signer=signer,
            signer_name=signer.display_name,
            signed_at=signed_at,
            supersedes=previous,
        )
        report.file.save(f"{uid}.pdf", ContentFile(signed), save=False)
        try:
            if file_sha256(report.file.name) != digest:
                raise ReportIntegrityError(f"The stored copy of report {uid} differs from what was signed.")
            report.full_clean()
            report.save()
        except Exception:
            logger.error(
                "report %s was stored as %s but not recorded; the file is orphaned", uid, report.file.name
            )
            raise
        audit_record(
            actor=None,
            action=AuditAction.REPORT_CREATE,
            obj=report,
            organization=case.organization,
            case=case.pk,
            review=review.pk,
            signer=signer.pk,
            sha256=digest,
            addendum_to=str(previous.uid) if previous else None,
        )
        case_mark_reported(case_id=case.pk)
        _notify(report)
    logger.info(
        "stored %s for case %s (%s bytes)", "addendum" if previous else "report", case.pk, len(signed)
    )
    return report


def _notify(report: Report) -> None:
    # The referring clinician hears of it by e-mail after the commit; a failure here never blocks the report.
    from cases.notifications import notify_report_issued

    try:
        notify_report_issued(report)
    except Exception:  # noqa: BLE001
        logger.exception("could not queue the notification for report %s", report.uid)


@dataclass(frozen=True)
class ReportDownload:
    report: Report
    content: bytes
    filename: str


def report_download(*, actor: User, uid: str | uuid.UUID) -> ReportDownload:
    """The signed PDF for someone who may see the case (else Http404), checked against its sha256 and
    recorded in the audit trail."""
    report = report_get(actor, uid)
    with report.file.open("rb") as handle:
        content = handle.read()
    if hashlib.sha256(content).hexdigest() != report.sha256:
        logger.critical("stored report %s does not match its recorded sha256", report.uid)
        raise ReportIntegrityError(f"The stored file of report {report.uid} failed its integrity check.")
    audit_record(
        actor=actor,
        action=AuditAction.REPORT_DOWNLOAD,
        obj=report,
        organization=report.case.organization,
        case=report.case_id,
    )
    return ReportDownload(report=report, content=content, filename=f"teleder-report-{report.uid}.pdf")


def reports_sweep_missing(*, now: dt.datetime | None = None) -> list[int]:
    """Publish the report task again for reviewed cases whose current review has no report after
    ``TELEDER_STUCK_AFTER_S`` (a lost broker message, a worker that died); returns their case ids."""
    now = now or timezone.now()
    cutoff = now - dt.timedelta(seconds=settings.TELEDER_STUCK_AFTER_S)
    enqueued = []
    for case in Case.objects.filter(status=CaseStatus.REVIEWED, updated_at__lt=cutoff).order_by("updated_at"):
        review = current_review(case)
        if (
            review is not None
            and not Report.objects.filter(review=review).exists()
            and enqueue_report(review.pk)
        ):
            enqueued.append(case.pk)
    if enqueued:
        logger.warning("sweeper: re-enqueued reports for cases %s", enqueued)
    return enqueued
