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
from django.db.models import Max
from django.utils import timezone

from cases import refusals, review_rules
from cases.audit import audit_record
from cases.models import (
    Case,
    CaseStatus,
    ImageRequest,
    ImageRequestReason,
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
    Priority,
    RiskBand,
    Role,
    Sex,
    Site,
)

logger = logging.getLogger(__name__)

# The status machine. Anything not listed here is refused.
TRANSITIONS: dict[str, frozenset[str]] = {
    # A draft collects images; it is submitted explicitly and never changes its images afterwards.
    CaseStatus.DRAFT: frozenset({CaseStatus.SUBMITTED}),
    CaseStatus.SUBMITTED: frozenset({CaseStatus.ANALYSING, CaseStatus.FAILED}),
    CaseStatus.ANALYSING: frozenset({CaseStatus.AWAITING_REVIEW, CaseStatus.FAILED}),
    # A dermatologist reviews it, or returns it to the clinician for better images.
    CaseStatus.AWAITING_REVIEW: frozenset({CaseStatus.REVIEWED, CaseStatus.NEEDS_IMAGES}),
    # The clinician adds images and resubmits: the whole case is analysed again.
    CaseStatus.NEEDS_IMAGES: frozenset({CaseStatus.SUBMITTED}),
    CaseStatus.REVIEWED: frozenset({CaseStatus.REPORTED}),
    # A correction after the report: a new review, then an addendum report.
    CaseStatus.REPORTED: frozenset({CaseStatus.REVIEWED}),
    CaseStatus.FAILED: frozenset({CaseStatus.SUBMITTED}),
}


class IllegalTransition(ValidationError):
    """A status change the case's status machine does not allow."""


class StorageUnavailable(Exception):
    """The file store (local disk or S3) refused a write. Nothing of the request was kept: the database
    transaction is rolled back and the files already written for it are removed."""

    message = "The image store is unavailable, so nothing was stored. Try again in a few minutes."


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


def user_set_notifications(*, actor: User, enabled: bool) -> User:
    """A user turns their own e-mail notifications on or off (audited)."""
    actor.email_notifications = bool(enabled)
    actor.save(update_fields=["email_notifications"])
    audit_record(actor=actor, action="user.notifications", obj=actor, enabled=actor.email_notifications)
    return actor


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
        raise ValidationError({"images": refusals.TOO_MANY_IMAGES.format(limit=limit)})
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
        raise ValidationError({"images": refusals.CASE_TOO_LARGE})
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


def _storage_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [OSError]
    try:
        from botocore.exceptions import BotoCoreError, ClientError

        errors += [BotoCoreError, ClientError]
    except ImportError:  # pragma: no cover - botocore comes with django-storages[s3]
        pass
    return tuple(errors)


def _store_images(
    case: Case, images: Sequence[CleanImage], *, start: int = 0, round_: int = 1
) -> list[LesionImage]:
    """Write the files and their rows. A storage failure removes the files this call wrote and raises
    ``StorageUnavailable`` (the caller's transaction then drops the rows): nothing is half-stored."""
    stored: list[LesionImage] = []
    seen = set(case.images.values_list("sha256", flat=True)) if start else set()
    try:
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
                round=round_,
            )
            row.file.save(f"image.{image.extension}", ContentFile(image.content), save=False)
            stored.append(row)
            row.save()
    except _storage_errors() as exc:
        for row in stored:
            try:
                row.file.storage.delete(row.file.name)
            except Exception:  # noqa: BLE001 - best effort: the store is failing already
                logger.warning("could not remove %s after a failed submit", row.file.name)
        logger.warning("image store unavailable, case not stored: %s", exc.__class__.__name__)
        raise StorageUnavailable(StorageUnavailable.message) from exc
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
    draft: bool = False,
) -> Submission:
    """Store a new case with its images and, once committed, enqueue its analysis.

    A repeated call with the same ``submission_key`` by the same user returns the first case (a double
    click, a mobile retry) instead of creating a second one. With ``draft=True`` the case is stored as a
    draft (images optional, nothing analysed): add images with ``case_add_images``, then
    ``case_submit_for_analysis``.
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
    cleaned = _clean_images(images) if images or not draft else []
    _check_quota(actor, len(cleaned))
    try:
        with transaction.atomic():
            case = Case(
                status=CaseStatus.DRAFT if draft else CaseStatus.SUBMITTED,
                submitted_at=None if draft else timezone.now(),
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
            audit_record(actor=actor, action="case.create", obj=case, images=len(stored), draft=draft)
            if analyse and not draft:
                transaction.on_commit(lambda: enqueue_analysis(case.pk))
    except (IntegrityError, ValidationError):
        # Two concurrent submits with the same key: the other one won, between the check above and this
        # insert. full_clean() sees its committed row as a ValidationError of the unique constraint, the
        # database as an IntegrityError; either way the retry gets the winner's case, not an error.
        if submission_key:
            existing = Case.objects.filter(submitted_by=actor, submission_key=submission_key).first()
            if existing is not None:
                return Submission(existing, created=False)
        raise
    return Submission(case, created=True)


IMAGE_STATUSES = (CaseStatus.DRAFT, CaseStatus.NEEDS_IMAGES)


def _current_round(case: Case) -> int:
    """The image round being collected: 1 for a draft, the open request's round after a request."""
    request = case.image_requests.filter(resolved_at__isnull=True).order_by("-created_at").first()
    return request.round if request is not None else 1


@transaction.atomic
def case_add_images(*, actor: User, case: Case, images: Sequence[BinaryIO]) -> list[LesionImage]:
    """Add images to a draft, or to a case returned for better images. A submitted case never changes
    its images (its analysis may already be running): the clinician submits a draft when it is complete."""
    case = Case.objects.select_for_update().get(pk=case.pk)
    if case.submitted_by_id != actor.pk and not actor.is_platform_admin:
        raise PermissionDenied("Only the submitting clinician can add images.")
    if case.status not in IMAGE_STATUSES:
        raise IllegalTransition(
            {
                "images": f"Images can only be added to a draft or to a case returned for better images; "
                f"this case is {case.get_status_display().lower()}. Create the case as a draft, add its "
                "images, then submit it."
            },
            code="illegal_transition",
        )
    existing = case.images.count()
    cleaned = _clean_images(images, existing=existing)
    _check_quota(actor, len(cleaned))
    stored = _store_images(case, cleaned, start=existing, round_=_current_round(case))
    audit_record(actor=actor, action="case.add_images", obj=case, images=len(stored))
    return stored


@transaction.atomic
def case_submit_for_analysis(*, actor: User, case: Case) -> Case:
    """Submit a draft (or resubmit a case returned for better images) and, on commit, enqueue its analysis.

    Refused without images, and after a request for images without at least one new image."""
    case = Case.objects.select_for_update().get(pk=case.pk)
    if case.submitted_by_id != actor.pk and not actor.is_platform_admin:
        raise PermissionDenied("Only the submitting clinician can submit this case.")
    _check_transition(case, CaseStatus.SUBMITTED)
    request = case.image_requests.filter(resolved_at__isnull=True).order_by("-created_at").first()
    if not case.images.exists():
        raise ValidationError({"images": "Add at least one image before submitting."})
    if request is not None and not case.images.filter(round=request.round).exists():
        raise ValidationError({"images": "Add at least one new image, as the dermatologist asked."})
    now = timezone.now()
    if request is not None:
        request.resolved_at = now
        request.save(update_fields=["resolved_at"])
    case.submitted_at = now
    # A new analysis of the whole case: its own attempts, and no stale AI result while it runs.
    case.risk, case.risk_band, case.analysed_at, case.analysis_attempts = None, "", None, 0
    _transition(
        case,
        CaseStatus.SUBMITTED,
        actor=actor,
        update_fields=["submitted_at", "risk", "risk_band", "analysed_at", "analysis_attempts"],
        round=request.round if request is not None else 1,
    )
    transaction.on_commit(lambda: enqueue_analysis(case.pk))
    return case


@transaction.atomic
def case_request_images(*, actor: User, case: Case, reason: str, note: str = "") -> ImageRequest:
    """A dermatologist returns a case awaiting review to its clinician for better images, with a reason."""
    case = _locked_for_review(actor, case)
    if reason not in ImageRequestReason.values:
        raise ValidationError({"reason": "Choose what is needed."})
    note = (note or "").strip()
    if reason == ImageRequestReason.OTHER and not note:
        raise ValidationError({"note": "Say what is needed when the reason is 'Other'."})
    _check_transition(case, CaseStatus.NEEDS_IMAGES)
    next_round = (case.images.aggregate(m=Max("round"))["m"] or 1) + 1
    request = ImageRequest(case=case, requested_by=actor, reason=reason, note=note, round=next_round)
    request.full_clean()
    request.save()
    audit_record(
        actor=actor,
        action="case.request_images",
        obj=case,
        reason=reason,
        round=next_round,
        request=request.pk,
    )
    _transition(case, CaseStatus.NEEDS_IMAGES, actor=actor, reason=reason)
    from cases.notifications import notify_images_requested

    notify_images_requested(request)
    return request


def case_claim_for_analysis(*, case_id: int, worker: str = "") -> Case | None:
    """Move a submitted (or stuck analysing) case to analysing; None if there is nothing to analyse.

    A conditional UPDATE claims the case, so two workers that got the same message cannot both run it.
    ``worker`` names the claiming worker (see ``inference.tasks.worker_identity``) so that the sweeper can
    tell a case whose worker died from one still being analysed.
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
        case.analysis_worker = worker[:200]
        case.save(
            update_fields=[
                "status",
                "analysis_attempts",
                "analysis_started_at",
                "analysis_worker",
                "updated_at",
            ]
        )
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


class ReviewAlreadyExists(IllegalTransition):
    """A plain review of a case that already has one (a double click, a second tab, a retried request).

    A change of an issued report is an explicit correction (``review_correct``), never a second review."""

    def __init__(self, review: Review) -> None:
        self.review_id = review.pk
        super().__init__(
            f"This case was already reviewed (review {review.pk} by {review.reviewer.display_name}). "
            "To change the report, use 'Correct this report' and give a reason.",
            code="already_reviewed",
        )


def _ai_flag(case: Case) -> bool | None:
    threshold = case.model_version.threshold if case.model_version_id else None
    return review_rules.ai_flagged(risk=case.risk, threshold=threshold)


def _check_agreement(
    claimed: bool | None, *, flagged: bool | None, malignant: bool, case: Case
) -> bool | None:
    """The derived agreement; a client's claim that contradicts it is refused, never silently replaced."""
    derived = review_rules.agrees_with_ai(flagged=flagged, malignant=malignant)
    if claimed is None or claimed == derived:
        return derived
    if flagged is None:
        message = "The AI did not assess this case: there is no AI assessment to confirm or override."
    else:
        ai = "flagged this lesion" if flagged else "did not flag this lesion"
        call = "malignant" if malignant else "benign"
        risk = (
            f" (risk {case.risk:.2f}, threshold {case.model_version.threshold:.2f})"
            if case.risk is not None
            else ""
        )
        verb = "confirm" if claimed else "override"
        message = (
            f"You chose to {verb} the AI, but the AI {ai}{risk} and you called the lesion {call}: "
            f"that {'overrides' if claimed else 'confirms'} it. Check the AI choice or the malignant call."
        )
    raise ValidationError({"agrees_with_ai": message})


def _locked_for_review(actor: User, case: Case) -> Case:
    case = (
        Case.objects.select_for_update(of=("self",))
        .select_related("model_version", "organization")
        .get(pk=case.pk)
    )
    if not can_review(actor, case):
        raise PermissionDenied("Only a dermatologist serving this organization can review this case.")
    return case


def _review_create(
    *,
    actor: User,
    case: Case,
    supersedes: Review | None,
    diagnosis: str,
    malignant: bool | None,
    management: str,
    follow_up_months: int | None,
    notes: str,
    agrees_with_ai: bool | None,
    justification: str,
    correction_reason: str = "",
) -> Review:
    checked = review_rules.check_review(
        diagnosis=diagnosis,
        malignant=malignant,
        management=management,
        follow_up_months=follow_up_months,
        justification=justification,
    )
    flagged = _ai_flag(case)
    agreement = _check_agreement(agrees_with_ai, flagged=flagged, malignant=checked.malignant, case=case)
    review = Review(
        case=case,
        reviewer=actor,
        diagnosis=checked.diagnosis,
        malignant=checked.malignant,
        management=checked.management,
        follow_up_months=checked.follow_up_months,
        notes=(notes or "").strip(),
        ai_flagged=flagged,
        agrees_with_ai=agreement,
        justification=checked.justification,
        correction_reason=correction_reason,
        supersedes=supersedes,
    )
    review.full_clean()
    review.save()
    audit_record(
        actor=actor,
        action="review.correct" if supersedes else "review.create",
        obj=review,
        organization=case.organization,
        case=case.pk,
        diagnosis=checked.diagnosis,
        malignant=checked.malignant,
        management=checked.management,
        ai_flagged=flagged,
        agrees_with_ai=agreement,
        unusual=list(checked.unusual),
        justification=checked.justification or None,
        correction=supersedes is not None,
        supersedes=supersedes.pk if supersedes else None,
        reason=correction_reason or None,
    )
    case.report_error = ""
    _transition(case, CaseStatus.REVIEWED, actor=actor, update_fields=["report_error"])
    transaction.on_commit(lambda: enqueue_report(review.pk))
    return review


@transaction.atomic
def review_submit(
    *,
    actor: User,
    case: Case,
    diagnosis: str,
    malignant: bool | None,
    management: str,
    follow_up_months: int | None = None,
    notes: str = "",
    agrees_with_ai: bool | None = None,
    justification: str = "",
) -> Review:
    """Record a dermatologist's review of a case awaiting review, move it to reviewed and, on commit,
    generate the signed report.

    The rules of ``cases.review_rules`` apply (``malignant=None`` derives it from the diagnosis). Agreement
    with the AI is derived from the AI flag and the malignant call; a claimed ``agrees_with_ai`` that
    contradicts it is refused. A case that already has a review raises ``ReviewAlreadyExists`` (409 in the
    API) with that review's id: a change is an explicit ``review_correct``.
    """
    case = _locked_for_review(actor, case)
    if case.status in (CaseStatus.REVIEWED, CaseStatus.REPORTED):
        existing = current_review(case)
        if existing is not None:
            raise ReviewAlreadyExists(existing)
    _check_transition(case, CaseStatus.REVIEWED)
    return _review_create(
        actor=actor,
        case=case,
        supersedes=None,
        diagnosis=diagnosis,
        malignant=malignant,
        management=management,
        follow_up_months=follow_up_months,
        notes=notes,
        agrees_with_ai=agrees_with_ai,
        justification=justification,
    )


MIN_CORRECTION_REASON_CHARS = 10


@transaction.atomic
def review_correct(
    *,
    actor: User,
    case: Case,
    reason: str,
    diagnosis: str,
    malignant: bool | None,
    management: str,
    follow_up_months: int | None = None,
    notes: str = "",
    agrees_with_ai: bool | None = None,
    justification: str = "",
) -> Review:
    """Correct the issued report of a case: a new review that supersedes the current one, with a required
    reason; the report task issues an addendum that prints the reason. The same rules as ``review_submit``."""
    case = _locked_for_review(actor, case)
    reason = (reason or "").strip()
    if len(reason) < MIN_CORRECTION_REASON_CHARS:
        raise ValidationError(
            {
                "reason": f"Give the reason for the correction (at least {MIN_CORRECTION_REASON_CHARS} characters)."
            }
        )
    if case.status == CaseStatus.REVIEWED:
        raise IllegalTransition(
            "The report of this case is still being generated; correct it once it is issued.",
            code="illegal_transition",
        )
    previous = current_review(case)
    if case.status != CaseStatus.REPORTED or previous is None:
        raise IllegalTransition(
            f"A case that is {case.get_status_display().lower()} has no issued report to correct.",
            code="illegal_transition",
        )
    return _review_create(
        actor=actor,
        case=case,
        supersedes=previous,
        diagnosis=diagnosis,
        malignant=malignant,
        management=management,
        follow_up_months=follow_up_months,
        notes=notes,
        agrees_with_ai=agrees_with_ai,
        justification=justification,
        correction_reason=reason,
    )


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
