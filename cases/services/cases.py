"""New cases (intake: with a new patient and lesion if need be), drafts and their images, submitting for
analysis, and sending a failed case back for analysis."""

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.utils import timezone

from cases import refusals
from cases.audit import AuditAction, audit_record
from cases.models import Case, CaseStatus, Lesion, LesionImage, Patient, User
from cases.permissions import can_edit_submission, can_retry, can_submit
from cases.services.base import IllegalTransition, StorageUnavailable, _check_transition, _transition
from cases.services.patients import lesion_create, patient_create, patient_organization
from cases.services.queue import enqueue_analysis
from cases.uploads import CleanImage, clean_image
from cases.vocabulary import Priority, Sex, Site

logger = logging.getLogger(__name__)


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
            audit_record(
                actor=actor, action=AuditAction.CASE_CREATE, obj=case, images=len(stored), draft=draft
            )
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


@dataclass(frozen=True)
class NewPatient:
    reference: str
    sex: str = Sex.UNKNOWN
    year_of_birth: int | None = None


@dataclass(frozen=True)
class NewLesion:
    site: str = Site.UNKNOWN
    label: str = ""


def case_intake(
    *,
    actor: User,
    images: Sequence[BinaryIO],
    patient: Patient | None = None,
    new_patient: NewPatient | None = None,
    organization_id: int | None = None,
    lesion: Lesion | None = None,
    new_lesion: NewLesion | None = None,
    clinical_notes: str = "",
    priority: str = Priority.ROUTINE,
    submission_key: str = "",
    draft: bool = False,
) -> Submission:
    """A new case (or a ``draft``), with the patient and lesion it needs, in one transaction: all or nothing.

    The patient is ``patient`` or a ``new_patient`` (in ``organization_id``, or the actor's only
    organization: ``patient_organization``); the lesion is ``lesion`` or a ``new_lesion`` of that patient.
    Pages and the API both submit through here.
    """
    with transaction.atomic():
        if patient is None:
            if new_patient is None:
                raise ValidationError({"patient": "Choose a patient or give a reference for a new one."})
            patient = patient_create(
                actor=actor,
                organization=patient_organization(actor=actor, organization_id=organization_id),
                reference=new_patient.reference,
                sex=new_patient.sex or Sex.UNKNOWN,
                year_of_birth=new_patient.year_of_birth,
            )
        if lesion is None:
            new_lesion = new_lesion or NewLesion()
            lesion = lesion_create(
                actor=actor, patient=patient, site=new_lesion.site or Site.UNKNOWN, label=new_lesion.label
            )
        elif lesion.patient_id != patient.pk:
            raise ValidationError({"lesion": "This lesion belongs to another patient."})
        return case_submit(
            actor=actor,
            lesion=lesion,
            images=images,
            clinical_notes=clinical_notes,
            priority=priority,
            submission_key=submission_key,
            draft=draft,
        )


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
    if not can_edit_submission(actor, case):
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
    audit_record(actor=actor, action=AuditAction.CASE_ADD_IMAGES, obj=case, images=len(stored))
    return stored


@transaction.atomic
def case_submit_for_analysis(*, actor: User, case: Case) -> Case:
    """Submit a draft (or resubmit a case returned for better images) and, on commit, enqueue its analysis.

    Refused without images, and after a request for images without at least one new image."""
    case = Case.objects.select_for_update().get(pk=case.pk)
    if not can_edit_submission(actor, case):
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
def case_retry(*, actor: User, case: Case) -> Case:
    """An admin sends a failed case back for analysis."""
    if not can_retry(actor):
        raise PermissionDenied("Only administrators can retry failed cases.")
    case = Case.objects.select_for_update().get(pk=case.pk)
    _transition(case, CaseStatus.SUBMITTED, actor=actor, update_fields=["failure_reason"], retry=True)
    case.failure_reason = ""
    case.save(update_fields=["failure_reason"])
    transaction.on_commit(lambda: enqueue_analysis(case.pk))
    return case
