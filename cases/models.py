"""Organizations, users, patients, lesions, cases, images, predictions, reviews, reports and the audit trail.

Rules that must always hold are database constraints; state changes go through ``cases.services`` only.
"""

import uuid

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.core.exceptions import PermissionDenied
from django.db import models
from django.db.models import Q

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


class Organization(models.Model):
    """A clinic or hospital that submits cases."""

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class User(AbstractUser):
    """A platform user with one role. Clinicians belong to organizations; dermatologists serve several."""

    role = models.CharField(max_length=16, choices=Role.choices, default=Role.CLINICIAN)
    organizations = models.ManyToManyField(Organization, related_name="members", blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(role__in=Role.values), name="user_role_valid"),
        ]

    def __str__(self) -> str:
        full_name = self.get_full_name()
        return f"{full_name} ({self.username})" if full_name else self.username

    @property
    def display_name(self) -> str:
        return self.get_full_name() or self.username

    @property
    def is_clinician(self) -> bool:
        return self.role == Role.CLINICIAN

    @property
    def is_dermatologist(self) -> bool:
        return self.role == Role.DERMATOLOGIST

    @property
    def is_platform_admin(self) -> bool:
        return self.role == Role.ADMIN or self.is_superuser


class Patient(models.Model):
    """A pseudonymous patient: the organization's own reference, never a name."""

    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="patients")
    reference = models.CharField(
        max_length=64, help_text="Pseudonymous reference, unique in the organization."
    )
    sex = models.CharField(max_length=8, choices=Sex.choices, default=Sex.UNKNOWN)
    year_of_birth = models.PositiveSmallIntegerField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["reference"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "reference"], name="patient_reference_unique_per_org"
            ),
            models.CheckConstraint(condition=Q(sex__in=Sex.values), name="patient_sex_valid"),
            models.CheckConstraint(
                condition=Q(year_of_birth__isnull=True) | Q(year_of_birth__gte=1880, year_of_birth__lte=2200),
                name="patient_year_of_birth_plausible",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.reference} ({self.organization.slug})"

    def age_in(self, year: int) -> int | None:
        return None if self.year_of_birth is None else year - self.year_of_birth


class Lesion(models.Model):
    """One lesion of a patient, followed over one or more cases."""

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="lesions")
    site = models.CharField(max_length=32, choices=Site.choices, default=Site.UNKNOWN)
    label = models.CharField(
        max_length=100, blank=True, help_text="e.g. 'left shoulder, 2 cm below clavicle'"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["patient", "id"]
        constraints = [models.CheckConstraint(condition=Q(site__in=Site.values), name="lesion_site_valid")]

    def __str__(self) -> str:
        label = f" - {self.label}" if self.label else ""
        return f"Lesion {self.pk} of {self.patient.reference}: {self.get_site_display()}{label}"


class CaseStatus(models.TextChoices):
    SUBMITTED = "submitted", "Submitted"
    ANALYSING = "analysing", "Analysing"
    AWAITING_REVIEW = "awaiting_review", "Awaiting review"
    REVIEWED = "reviewed", "Reviewed"
    REPORTED = "reported", "Reported"
    FAILED = "failed", "Failed"


class Case(models.Model):
    """One submission: a lesion, its images and clinical notes, moving through the status machine."""

    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="cases")
    lesion = models.ForeignKey(Lesion, on_delete=models.PROTECT, related_name="cases")
    submitted_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="cases")
    clinical_notes = models.TextField(blank=True, max_length=5000)
    priority = models.CharField(max_length=8, choices=Priority.choices, default=Priority.ROUTINE)
    status = models.CharField(max_length=16, choices=CaseStatus.choices, default=CaseStatus.SUBMITTED)
    failure_reason = models.TextField(blank=True)
    report_error = models.TextField(blank=True, help_text="Last report generation failure, if any.")
    # Metadata as it was at submission, so that a re-analysis sees what the first one saw.
    age_at_submission = models.PositiveSmallIntegerField(null=True, blank=True)
    sex_at_submission = models.CharField(max_length=8, choices=Sex.choices, default=Sex.UNKNOWN)
    site_at_submission = models.CharField(max_length=32, choices=Site.choices, default=Site.UNKNOWN)
    risk = models.FloatField(
        null=True, blank=True, help_text="Highest AI probability over the case's images."
    )
    risk_band = models.CharField(max_length=8, choices=RiskBand.choices, blank=True)
    ai_assessment = models.CharField(
        max_length=16,
        choices=CaseAssessment.choices,
        blank=True,
        help_text="AI safety gate: all, some or none of the images assessed (blank until analysed).",
    )
    model_version = models.ForeignKey(
        "inference.ModelVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="cases"
    )
    analysis_attempts = models.PositiveIntegerField(default=0)
    analysis_started_at = models.DateTimeField(null=True, blank=True)
    analysed_at = models.DateTimeField(null=True, blank=True)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    submission_key = models.CharField(
        max_length=64,
        blank=True,
        help_text="Client-chosen key that makes a repeated submit return the same case.",
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["organization", "status", "-risk"], name="case_queue_idx"),
            models.Index(fields=["status", "updated_at"], name="case_status_updated_idx"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(status__in=CaseStatus.values), name="case_status_valid"),
            models.CheckConstraint(condition=Q(priority__in=Priority.values), name="case_priority_valid"),
            models.CheckConstraint(
                condition=Q(risk__isnull=True) | Q(risk__gte=0.0, risk__lte=1.0),
                name="case_risk_in_unit_interval",
            ),
            models.CheckConstraint(
                condition=Q(age_at_submission__isnull=True) | Q(age_at_submission__lte=120),
                name="case_age_at_most_120",
            ),
            models.CheckConstraint(
                condition=~Q(status=CaseStatus.FAILED) | ~Q(failure_reason=""), name="case_failed_has_reason"
            ),
            models.UniqueConstraint(
                fields=["submitted_by", "submission_key"],
                condition=~Q(submission_key=""),
                name="case_submission_key_unique_per_user",
            ),
        ]

    def __str__(self) -> str:
        return f"Case {self.pk} ({self.get_status_display()})"


def lesion_image_path(instance: "LesionImage", filename: str) -> str:
    # The client's file name is never used: images are stored under a random name.
    return f"cases/{instance.case_id}/{uuid.uuid4().hex}.{'png' if instance.content_type == 'image/png' else 'jpg'}"


class LesionImage(models.Model):
    """One dermoscopic image of a case, re-encoded on upload (EXIF removed)."""

    case = models.ForeignKey(Case, on_delete=models.PROTECT, related_name="images")
    position = models.PositiveSmallIntegerField(default=0)
    file = models.FileField(upload_to=lesion_image_path, max_length=255)
    sha256 = models.CharField(max_length=64)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    content_type = models.CharField(max_length=32)
    size_bytes = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["case", "position"]
        constraints = [
            models.UniqueConstraint(fields=["case", "sha256"], name="image_unique_per_case"),
            models.UniqueConstraint(fields=["case", "position"], name="image_position_unique_per_case"),
            models.CheckConstraint(
                condition=Q(content_type__in=["image/jpeg", "image/png"]), name="image_content_type_allowed"
            ),
            models.CheckConstraint(condition=Q(position__lt=10), name="image_at_most_10_per_case"),
        ]

    def __str__(self) -> str:
        return f"Image {self.position + 1} of case {self.case_id}"


class Prediction(models.Model):
    """The ensemble's output for one image under one model version (one row per pair: reruns update it)."""

    image = models.ForeignKey(LesionImage, on_delete=models.CASCADE, related_name="predictions")
    model_version = models.ForeignKey(
        "inference.ModelVersion", on_delete=models.PROTECT, related_name="predictions"
    )
    probability = models.FloatField(
        null=True, blank=True, help_text="Ensemble probability of malignancy (none when not assessed)."
    )
    risk_band = models.CharField(max_length=8, choices=RiskBand.choices, blank=True)
    assessment = models.CharField(max_length=16, choices=Assessment.choices, default=Assessment.ASSESSED)
    reasons = models.JSONField(
        default=list, blank=True, help_text="Why the AI could not assess the image (machine-readable)."
    )
    quality = models.JSONField(
        default=dict, blank=True, help_text="Quality check name -> {value, threshold, passed}."
    )
    ood_score = models.FloatField(
        null=True, blank=True, help_text="Out-of-distribution score (none when the package has no gate)."
    )
    member_probabilities = models.JSONField(default=dict, help_text="Member name -> probability.")
    class_probabilities = models.JSONField(
        default=dict, blank=True, help_text="Class -> probability (multiclass)."
    )
    latency_ms = models.FloatField(help_text="Model time for the batch this image ran in, per image.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["image"]
        constraints = [
            models.UniqueConstraint(
                fields=["image", "model_version"], name="prediction_unique_per_image_model"
            ),
            models.CheckConstraint(
                condition=Q(probability__gte=0.0, probability__lte=1.0),
                name="prediction_probability_in_unit_interval",
            ),
        ]

    def __str__(self) -> str:
        if self.probability is None:
            return f"not assessed for {self.image} ({self.model_version})"
        return f"{self.probability:.3f} for {self.image} ({self.model_version})"

    @property
    def explanation(self) -> str:
        from inference.quality import explain

        return explain(list(self.reasons or [])) if self.assessment == Assessment.NOT_ASSESSED else ""


class Review(models.Model):
    """A dermatologist's assessment of a case. A correction is a new review that supersedes the earlier one."""

    case = models.ForeignKey(Case, on_delete=models.PROTECT, related_name="reviews")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="reviews")
    diagnosis = models.CharField(max_length=8, choices=Diagnosis.choices)
    malignant = models.BooleanField()
    management = models.CharField(max_length=16, choices=Management.choices)
    follow_up_months = models.PositiveSmallIntegerField(null=True, blank=True)
    notes = models.TextField(blank=True, max_length=5000)
    agrees_with_ai = models.BooleanField(help_text="Whether the dermatologist confirmed the AI's assessment.")
    supersedes = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="superseded_by"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["case", "created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(diagnosis__in=Diagnosis.values), name="review_diagnosis_valid"
            ),
            models.CheckConstraint(
                condition=Q(management__in=Management.values), name="review_management_valid"
            ),
            models.CheckConstraint(
                condition=~Q(management=Management.FOLLOW_UP)
                | Q(follow_up_months__gte=1, follow_up_months__lte=60),
                name="review_follow_up_has_months",
            ),
        ]

    def __str__(self) -> str:
        return f"Review of case {self.case_id} by {self.reviewer}: {self.get_diagnosis_display()}"


def report_path(instance: "Report", filename: str) -> str:
    return f"reports/{instance.case_id}/{instance.uid}.pdf"


class Report(models.Model):
    """A signed PDF report. Stored once and never overwritten; a correction is an addendum that supersedes it."""

    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    case = models.ForeignKey(Case, on_delete=models.PROTECT, related_name="reports")
    review = models.OneToOneField(Review, on_delete=models.PROTECT, related_name="report")
    file = models.FileField(upload_to=report_path, max_length=255)
    sha256 = models.CharField(max_length=64, unique=True)
    signer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="signed_reports"
    )
    signer_name = models.CharField(max_length=200)
    signed_at = models.DateTimeField()
    supersedes = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="addendum"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["case", "created_at"]

    def __str__(self) -> str:
        kind = "Addendum" if self.supersedes_id else "Report"
        return f"{kind} {self.uid} for case {self.case_id}"

    @property
    def is_addendum(self) -> bool:
        return self.supersedes_id is not None


class AuditEventQuerySet(models.QuerySet):
    """Bulk updates and deletes would bypass the model's own refusal: refuse them here too."""

    def update(self, **kwargs):
        raise PermissionDenied("Audit events are append-only.")

    def delete(self):
        raise PermissionDenied("Audit events are append-only.")

    def bulk_update(self, objs, fields, batch_size=None):
        raise PermissionDenied("Audit events are append-only.")


class AuditEvent(models.Model):
    """Append-only record of who did what to which object, when and from where."""

    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="audit_events"
    )
    action = models.CharField(max_length=64, db_index=True)
    object_type = models.CharField(max_length=64)
    object_id = models.CharField(max_length=64)
    organization = models.ForeignKey(
        Organization, null=True, blank=True, on_delete=models.PROTECT, related_name="audit_events"
    )
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["object_type", "object_id"], name="audit_object_idx")]

    def __str__(self) -> str:
        who = self.actor.username if self.actor_id else "system"
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {who} {self.action} {self.object_type}:{self.object_id}"

    def save(self, *args, **kwargs) -> None:
        if self.pk is not None:
            raise PermissionDenied("Audit events are append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise PermissionDenied("Audit events are append-only.")
