"""Every write to clinical data: validated (``full_clean``), in a transaction, and recorded in the audit trail.

Views, API views, forms and Celery tasks call these functions and hold no business rules of their own.
Errors are ``django.core.exceptions.ValidationError`` with a message per field, or ``PermissionDenied``.
"""

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import BinaryIO

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.utils import timezone

from cases.audit import audit_record
from cases.models import (
    Case,
    CaseStatus,
    Lesion,
    LesionImage,
    Organization,
    Patient,
    Prediction,
    Review,
    User,
)
from cases.selectors import can_review, can_submit, current_review
from cases.uploads import CleanImage, clean_image
from cases.vocabulary import (
    Assessment,
    CaseAssessment,
    Diagnosis,
    Management,
    Priority,
    RiskBand,
    Role,
    Sex,
    Site,
)

logger = logging.getLogger(__name__)

# The status machine. Anything not listed here is refused.
TRANSITIONS: dict[str, frozenset[str]] = {
    CaseStatus.SUBMITTED: frozenset({CaseStatus.ANALYSING, CaseStatus.FAILED}),
    CaseStatus.ANALYSING: frozenset({CaseStatus.AWAITING_REVIEW, CaseStatus.FAILED}),
    CaseStatus.AWAITING_REVIEW: frozenset({CaseStatus.REVIEWED}),
    CaseStatus.REVIEWED: frozenset({CaseStatus.REPORTED}),
    # A correction after the report: a new review, then an addendum report.
    CaseStatus.REPORTED: frozenset({CaseStatus.REVIEWED}),
    CaseStatus.FAILED: frozenset({CaseStatus.SUBMITTED}),
}


class IllegalTransition(ValidationError):
    """A status change the case's status machine does not allow."""


def _check_transition(case: Case, to: str) -> None:
    if to not in TRANSITIONS.get(case.status, frozenset()):
        raise IllegalTransition(
            f"A case that is {case.get_status_display().lower()} cannot become "
            f"{CaseStatus(to).label.lower()}.",
            code="illegal_transition",
        )


def _transition(
    case: Case, to: str, *, actor: User | None, update_fields: Iterable[str] = (), **details
) -> None:
    _check_transition(case, to)
    previous = case.status
    case.status = to
    case.save(update_fields=["status", "updated_at", *update_fields])
    audit_record(actor=actor, action="case.status", obj=case, **{"from": previous, "to": to}, **details)


# Organizations and users --------------------------------------------------------------------------------


@transaction.atomic
def organization_create(*, name: str, slug: str, actor: User | None = None) -> Organization:
    organization = Organization(name=name.strip(), slug=slug.strip())
    organization.full_clean()
    organization.save()
    audit_record(actor=actor, action="organization.create", obj=organization)
    return organization


@transaction.atomic
def user_create(
    *,
    username: str,
    password: str,
    role: str,
    organizations: Sequence[Organization] = (),
    email: str = "",
    first_name: str = "",
    last_name: str = "",
    actor: User | None = None,
) -> User:
    if role not in Role.values:
        raise ValidationError({"role": f"Unknown role {role!r}."})
    if role == Role.CLINICIAN and len(organizations) != 1:
        raise ValidationError({"organizations": "A clinician belongs to exactly one organization."})
    user = User(
        username=username,
        email=email,
        role=role,
        first_name=first_name,
        last_name=last_name,
        is_staff=role == Role.ADMIN,
    )
    user.set_password(password)
    user.full_clean()
    user.save()
    user.organizations.set(organizations)
    audit_record(
        actor=actor, action="user.create", obj=user, role=role, organizations=[o.slug for o in organizations]
    )
    return user


# Patients and lesions -----------------------------------------------------------------------------------


def _check_year_of_birth(year_of_birth: int | None) -> None:
    if year_of_birth is None:
        return
    this_year = timezone.now().year
    if year_of_birth > this_year:
        raise ValidationError({"year_of_birth": "The year of birth cannot be in the future."})
    if this_year - year_of_birth > 120:
        raise ValidationError({"year_of_birth": "That gives an age over 120 years."})


@transaction.atomic
def patient_create(
    *,
    actor: User,
    organization: Organization,
    reference: str,
    sex: str = Sex.UNKNOWN,
    year_of_birth: int | None = None,
) -> Patient:
    if not can_submit(actor, organization):
        raise PermissionDenied("You cannot add patients to this organization.")
    if sex not in Sex.values:
        raise ValidationError({"sex": f"Sex must be one of {', '.join(Sex.values)}."})
    _check_year_of_birth(year_of_birth)
    reference = (reference or "").strip()
    if Patient.objects.filter(organization=organization, reference__iexact=reference).exists():
        raise ValidationError(
            {"reference": "A patient with this reference already exists in your organization."}
        )
    patient = Patient(
        organization=organization, reference=reference, sex=sex, year_of_birth=year_of_birth, created_by=actor
    )
    patient.full_clean()
    patient.save()
    audit_record(actor=actor, action="patient.create", obj=patient)
    return patient


@transaction.atomic
def lesion_create(*, actor: User, patient: Patient, site: str = Site.UNKNOWN, label: str = "") -> Lesion:
    if not can_submit(actor, patient.organization):
        raise PermissionDenied("You cannot add lesions for this patient.")
    if site not in Site.values:
        raise ValidationError({"site": "Choose an anatomical site from the ISIC vocabulary."})
    lesion = Lesion(patient=patient, site=site, label=label.strip())
    lesion.full_clean()
    lesion.save()
    audit_record(actor=actor, action="lesion.create", obj=lesion, organization=patient.organization)
    return lesion


# Cases --------------------------------------------------------------------------------------------------


def enqueue_analysis(case_id: int) -> bool:
    """Publish ``analyse_case`` to the inference queue. Called on commit; a broker outage is logged, not
    raised: the case stays submitted and the sweeper publishes it again later, so no case is lost."""
    from teleder.celery import app

    try:
        app.send_task("inference.tasks.analyse_case", args=[case_id], queue="inference")
    except Exception:  # noqa: BLE001 - any broker failure must not fail the clinician's submit
        logger.warning(
            "could not enqueue analysis of case %s; the sweeper will retry", case_id, exc_info=True
        )
        return False
    Case.objects.filter(pk=case_id).update(enqueued_at=timezone.now())
    return True


def _clean_images(images: Sequence[BinaryIO], *, existing: int = 0) -> list[CleanImage]:
    limit = settings.TELEDER_MAX_IMAGES_PER_CASE
    if not images and not existing:
        raise ValidationError({"images": "Add at least one image."})
    if existing + len(images) > limit:
        raise ValidationError({"images": f"A case has at most {limit} images."})
    cleaned, errors, total = [], [], 0
    for index, upload in enumerate(images, start=1):
        name = getattr(upload, "name", None) or f"Image {index}"
        try:
            image = clean_image(upload, name=f"Image {index}")
        except ValidationError as exc:
            errors.extend(f"{message} ({_safe_name(name)})" for message in exc.messages)
            continue
        total += len(image.content)
        cleaned.append(image)
    if errors:
        raise ValidationError({"images": errors})
    if total > settings.TELEDER_MAX_CASE_BYTES:
        raise ValidationError({"images": "The images of one case together exceed the size limit."})
    return cleaned


def _safe_name(name: str) -> str:
    return "".join(ch for ch in str(name)[-80:] if ch.isprintable())


def _check_quota(actor: User, new_images: int) -> None:
    since = timezone.now() - timezone.timedelta(days=1)
    used = LesionImage.objects.filter(case__submitted_by=actor, created_at__gte=since).count()
    if used + new_images > settings.TELEDER_DAILY_UPLOAD_QUOTA:
        raise ValidationError(
            {
                "images": f"Daily upload limit reached ({settings.TELEDER_DAILY_UPLOAD_QUOTA} images per 24 hours)."
            }
        )


def _store_images(case: Case, images: Sequence[CleanImage], *, start: int = 0) -> list[LesionImage]:
    stored = []
    seen = set(case.images.values_list("sha256", flat=True)) if start else set()
    for image in images:
        if image.sha256 in seen:  # the same picture twice in one case adds nothing
            continue
        seen.add(image.sha256)
        row = LesionImage(
            case=case,
            position=start + len(stored),
            sha256=image.sha256,
            width=image.width,
            height=image.height,
            content_type=image.content_type,
            size_bytes=len(image.content),
        )
        row.file.save(f"image.{image.extension}", ContentFile(image.content), save=False)
        row.save()
        stored.append(row)
    return stored


@dataclass(frozen=True)
class Submission:
    case: Case
    created: bool


def case_submit(
    *,
    actor: User,
    lesion: Lesion,
    images: Sequence[BinaryIO],
    clinical_notes: str = "",
    priority: str = Priority.ROUTINE,
    submission_key: str = "",
    analyse: bool = True,
) -> Submission:
    """Store a new case with its images and, once committed, enqueue its analysis.

    A repeated call with the same ``submission_key`` by the same user returns the first case (a double
    click, a mobile retry) instead of creating a second one.
    """
    organization = lesion.patient.organization
    if not can_submit(actor, organization):
        raise PermissionDenied("You cannot submit cases for this organization.")
    submission_key = (submission_key or "").strip()[:64]
    if submission_key:
        existing = Case.objects.filter(submitted_by=actor, submission_key=submission_key).first()
        if existing is not None:
            return Submission(existing, created=False)
    if priority not in Priority.values:
        raise ValidationError({"priority": "Priority must be routine or urgent."})
    patient = lesion.patient
    age = patient.age_in(timezone.now().year)
    if age is not None and not 0 <= age <= 120:
        raise ValidationError({"year_of_birth": "The patient's age must be between 0 and 120 years."})
    cleaned = _clean_images(images)
    _check_quota(actor, len(cleaned))
    try:
        with transaction.atomic():
            case = Case(
                organization=organization,
                lesion=lesion,
                submitted_by=actor,
                clinical_notes=(clinical_notes or "").strip(),
                priority=priority,
                age_at_submission=age,
                sex_at_submission=patient.sex,
                site_at_submission=lesion.site,
                submission_key=submission_key,
            )
            case.full_clean()
            case.save()
            stored = _store_images(case, cleaned)
            audit_record(actor=actor, action="case.create", obj=case, images=len(stored))
            if analyse:
                transaction.on_commit(lambda: enqueue_analysis(case.pk))
    except IntegrityError:
        # Two concurrent submits with the same key: the other one won.
        if submission_key:
            existing = Case.objects.filter(submitted_by=actor, submission_key=submission_key).first()
            if existing is not None:
                return Submission(existing, created=False)
        raise
    return Submission(case, created=True)


@transaction.atomic
def case_add_images(*, actor: User, case: Case, images: Sequence[BinaryIO]) -> list[LesionImage]:
    """Add images to a case that has not been analysed yet, and (re)enqueue its analysis."""
    case = Case.objects.select_for_update().get(pk=case.pk)
    if case.submitted_by_id != actor.pk and not actor.is_platform_admin:
        raise PermissionDenied("Only the submitting clinician can add images.")
    if case.status != CaseStatus.SUBMITTED:
        raise ValidationError({"images": "Images can only be added before the analysis starts."})
    existing = case.images.count()
    cleaned = _clean_images(images, existing=existing)
    _check_quota(actor, len(cleaned))
    stored = _store_images(case, cleaned, start=existing)
    audit_record(actor=actor, action="case.add_images", obj=case, images=len(stored))
    transaction.on_commit(lambda: enqueue_analysis(case.pk))
    return stored


def case_claim_for_analysis(*, case_id: int) -> Case | None:
    """Move a submitted (or stuck analysing) case to analysing; None if there is nothing to analyse.

    A conditional UPDATE claims the case, so two workers that got the same message cannot both run it.
    """
    now = timezone.now()
    with transaction.atomic():
        case = Case.objects.select_for_update().filter(pk=case_id).first()
        if case is None or case.status not in (CaseStatus.SUBMITTED, CaseStatus.ANALYSING):
            return None
        previous = case.status
        case.status = CaseStatus.ANALYSING
        case.analysis_attempts += 1
        case.analysis_started_at = now
        case.save(update_fields=["status", "analysis_attempts", "analysis_started_at", "updated_at"])
        if previous != CaseStatus.ANALYSING:
            audit_record(actor=None, action="case.status", obj=case, **{"from": previous, "to": case.status})
    return case


@dataclass(frozen=True)
class ImageResult:
    image_id: int
    probability: float
    member_probabilities: dict[str, float]
    latency_ms: float
    class_probabilities: dict[str, float] | None = None
    # The AI safety gate: a not-assessed image keeps no probability and does not count towards the case risk.
    assessment: str = Assessment.ASSESSED
    reasons: tuple[str, ...] = ()
    quality: dict | None = None
    ood_score: float | None = None


def risk_band_for(probability: float, bands: dict[str, float]) -> str:
    """low below ``bands['medium']``, high at or above ``bands['high']``, medium in between."""
    if probability >= bands["high"]:
        return RiskBand.HIGH
    if probability >= bands["medium"]:
        return RiskBand.MEDIUM
    return RiskBand.LOW


@transaction.atomic
def case_record_analysis(*, case_id: int, model_version, results: Sequence[ImageResult]) -> Case:
    """Store one prediction per image (idempotent per image and model version) and move the case on to
    awaiting review with its maximum risk and band."""
    case = Case.objects.select_for_update().get(pk=case_id)
    if case.status != CaseStatus.ANALYSING:
        _check_transition(case, CaseStatus.AWAITING_REVIEW)
    image_ids = set(case.images.values_list("pk", flat=True))
    if {r.image_id for r in results} != image_ids:
        raise ValidationError("The analysis does not cover exactly the case's images.")
    bands = model_version.manifest.get("risk_bands") or {"medium": model_version.threshold, "high": 0.8}
    for result in results:
        assessed = result.assessment == Assessment.ASSESSED
        Prediction.objects.update_or_create(
            image_id=result.image_id,
            model_version=model_version,
            defaults={
                "probability": float(result.probability) if assessed else None,
                "risk_band": risk_band_for(result.probability, bands) if assessed else "",
                "member_probabilities": {k: float(v) for k, v in result.member_probabilities.items()}
                if assessed
                else {},
                "class_probabilities": {k: float(v) for k, v in (result.class_probabilities or {}).items()}
                if assessed
                else {},
                "latency_ms": float(result.latency_ms),
                "assessment": result.assessment,
                "reasons": list(result.reasons),
                "quality": result.quality or {},
                "ood_score": result.ood_score,
            },
        )
    # Only assessed images count: a case whose images all failed the gate has no risk and no band (never a
    # silent "low"); it still goes to the review queue, marked "AI could not assess".
    scored = [float(r.probability) for r in results if r.assessment == Assessment.ASSESSED]
    risk = max(scored) if scored else None
    case.risk = risk
    case.risk_band = risk_band_for(risk, bands) if risk is not None else ""
    case.ai_assessment = (
        CaseAssessment.NOT_ASSESSED
        if not scored
        else CaseAssessment.ASSESSED
        if len(scored) == len(results)
        else CaseAssessment.PARTIAL
    )
    case.model_version = model_version
    case.analysed_at = timezone.now()
    case.failure_reason = ""
    _transition(
        case,
        CaseStatus.AWAITING_REVIEW,
        actor=None,
        update_fields=[
            "risk",
            "risk_band",
            "ai_assessment",
            "model_version",
            "analysed_at",
            "failure_reason",
        ],
        model=str(model_version),
        risk=None if risk is None else round(risk, 4),
        ai_assessment=case.ai_assessment,
        images_assessed=len(scored),
        images_not_assessed=len(results) - len(scored),
    )
    return case


@transaction.atomic
def case_fail(*, case_id: int, reason: str) -> Case:
    """Move a case to failed with a reason a person can act on."""
    case = Case.objects.select_for_update().get(pk=case_id)
    if case.status == CaseStatus.FAILED:
        return case
    case.failure_reason = reason.strip()[:2000] or "Analysis failed."
    _transition(
        case, CaseStatus.FAILED, actor=None, update_fields=["failure_reason"], reason=case.failure_reason
    )
    return case


@transaction.atomic
def case_retry(*, actor: User, case: Case) -> Case:
    """An admin sends a failed case back for analysis."""
    if not actor.is_platform_admin:
        raise PermissionDenied("Only administrators can retry failed cases.")
    case = Case.objects.select_for_update().get(pk=case.pk)
    _transition(case, CaseStatus.SUBMITTED, actor=actor, update_fields=["failure_reason"], retry=True)
    case.failure_reason = ""
    case.save(update_fields=["failure_reason"])
    transaction.on_commit(lambda: enqueue_analysis(case.pk))
    return case


# Reviews ------------------------------------------------------------------------------------------------


def _ai_says_malignant(case: Case) -> bool | None:
    if case.risk is None or case.model_version is None:
        return None
    return case.risk >= case.model_version.threshold


@transaction.atomic
def review_submit(
    *,
    actor: User,
    case: Case,
    diagnosis: str,
    malignant: bool,
    management: str,
    follow_up_months: int | None = None,
    notes: str = "",
    agrees_with_ai: bool | None = None,
) -> Review:
    """Record a dermatologist's review, move the case to reviewed and, on commit, generate the signed report.

    On a reported case this is a correction: the new review supersedes the last one and the report task
    issues an addendum. ``agrees_with_ai`` defaults to whether the dermatologist's malignant/benign call
    matches the AI's at the model's threshold.
    """
    case = (
        Case.objects.select_for_update(of=("self",))
        .select_related("model_version", "organization")
        .get(pk=case.pk)
    )
    if not can_review(actor, case):
        raise PermissionDenied("Only a dermatologist serving this organization can review this case.")
    if diagnosis not in Diagnosis.values:
        raise ValidationError({"diagnosis": "Choose a diagnosis from the list."})
    if management not in Management.values:
        raise ValidationError({"management": "Choose a management option."})
    if management == Management.FOLLOW_UP:
        if follow_up_months is None or not 1 <= int(follow_up_months) <= 60:
            raise ValidationError({"follow_up_months": "Give the follow-up interval in months (1-60)."})
    else:
        follow_up_months = None
    _check_transition(case, CaseStatus.REVIEWED)
    ai_malignant = _ai_says_malignant(case)
    if agrees_with_ai is None:
        agrees_with_ai = ai_malignant is not None and ai_malignant == bool(malignant)
    previous = current_review(case)
    review = Review(
        case=case,
        reviewer=actor,
        diagnosis=diagnosis,
        malignant=bool(malignant),
        management=management,
        follow_up_months=follow_up_months,
        notes=(notes or "").strip(),
        agrees_with_ai=bool(agrees_with_ai),
        supersedes=previous if case.status == CaseStatus.REPORTED else None,
    )
    review.full_clean()
    review.save()
    audit_record(
        actor=actor,
        action="review.create",
        obj=review,
        organization=case.organization,
        case=case.pk,
        diagnosis=diagnosis,
        agrees_with_ai=review.agrees_with_ai,
        correction=review.supersedes_id is not None,
    )
    case.report_error = ""
    _transition(case, CaseStatus.REVIEWED, actor=actor, update_fields=["report_error"])
    transaction.on_commit(lambda: enqueue_report(review.pk))
    return review


def enqueue_report(review_id: int) -> bool:
    """Publish the report task; on a broker outage the sweeper picks the reviewed case up later."""
    from teleder.celery import app

    try:
        app.send_task("cases.reports.tasks.generate_report", args=[review_id], queue="default")
    except Exception:  # noqa: BLE001
        logger.warning(
            "could not enqueue the report of review %s; the sweeper will retry", review_id, exc_info=True
        )
        return False
    return True


def case_mark_reported(*, case_id: int, actor: User | None = None) -> Case:
    with transaction.atomic():
        case = Case.objects.select_for_update().get(pk=case_id)
        case.report_error = ""
        _transition(case, CaseStatus.REPORTED, actor=actor, update_fields=["report_error"])
    return case


def case_record_report_error(*, case_id: int, error: str) -> None:
    Case.objects.filter(pk=case_id).update(report_error=error[:2000], updated_at=timezone.now())
