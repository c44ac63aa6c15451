"""New cases (intake: with a new patient and lesion if need be), their images, and sending a failed case
back for analysis."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.utils import timezone

from cases.audit import AuditAction, audit_record
from cases.models import Case, CaseStatus, Lesion, LesionImage, Patient, User
from cases.permissions import can_add_images, can_retry, can_submit
from cases.services.base import _transition
from cases.services.patients import lesion_create, patient_create, patient_organization
from cases.services.queue import enqueue_analysis
from cases.uploads import CleanImage, clean_image
from cases.vocabulary import Priority, Sex, Site


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
            audit_record(actor=actor, action=AuditAction.CASE_CREATE, obj=case, images=len(stored))
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
) -> Submission:
    """A new case, with the patient and lesion it needs, in one transaction: all or nothing.

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
        )


@transaction.atomic
def case_add_images(*, actor: User, case: Case, images: Sequence[BinaryIO]) -> list[LesionImage]:
    """Add images to a case that has not been analysed yet, and (re)enqueue its analysis."""
    case = Case.objects.select_for_update().get(pk=case.pk)
    if not can_add_images(actor, case):
        raise PermissionDenied("Only the submitting clinician can add images.")
    if case.status != CaseStatus.SUBMITTED:
        raise ValidationError({"images": "Images can only be added before the analysis starts."})
    existing = case.images.count()
    cleaned = _clean_images(images, existing=existing)
    _check_quota(actor, len(cleaned))
    stored = _store_images(case, cleaned, start=existing)
    audit_record(actor=actor, action=AuditAction.CASE_ADD_IMAGES, obj=case, images=len(stored))
    transaction.on_commit(lambda: enqueue_analysis(case.pk))
    return stored


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
