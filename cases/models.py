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
    explain_not_assessed,
)


class Organization(models.Model):
    """A clinic or hospital that submits cases."""

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=64, unique=True)
    review_target_hours = models.PositiveSmallIntegerField(
        default=24,
        help_text="Urgent or high-risk cases waiting longer than this for a review alert the dermatologists.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class User(AbstractUser):
    """A platform user with one role. Clinicians belong to organizations; dermatologists serve several."""

    role = models.CharField(max_length=16, choices=Role.choices, default=Role.CLINICIAN)
    organizations = models.ManyToManyField(Organization, related_name="members", blank=True)
    credentials = models.CharField(
        max_length=120,
        blank=True,
        help_text="Printed under the signature, e.g. 'MD, consultant dermatologist'.",
    )
    registration_number = models.CharField(
        max_length=64, blank=True, help_text="Professional registration number printed on signed reports."
    )
    email_notifications = models.BooleanField(
        default=True, help_text="Send e-mail notifications (reports issued, images requested, cases waiting)."
    )

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
    DRAFT = "draft", "Draft"
    SUBMITTED = "submitted", "Submitted"
    ANALYSING = "analysing", "Analysing"
    AWAITING_REVIEW = "awaiting_review", "Awaiting review"
    NEEDS_IMAGES = "needs_images", "Needs better images"
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
    analysis_worker = models.CharField(
        max_length=200,
        blank=True,
        help_text="The worker (node name and process id) that claimed the analysis last; the sweeper "
        "re-enqueues the case at once when that worker's heartbeat is gone.",
    )
    submitted_at = models.DateTimeField(
        null=True, blank=True, help_text="When the case was (last) submitted for analysis; empty for drafts."
    )
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

    @property
    def analysis_delayed(self) -> bool:
        """Stored, but not yet queued for analysis longer than ``TELEDER_PUBLISH_GRACE_S`` (the broker was
        unavailable at submit): the AI result is late. The sweeper publishes it once the broker is back."""
        from django.utils import timezone

        if self.status != CaseStatus.SUBMITTED or self.enqueued_at is not None or self.updated_at is None:
            return False
        return (timezone.now() - self.updated_at).total_seconds() > settings.TELEDER_PUBLISH_GRACE_S


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
    round = models.PositiveSmallIntegerField(
        default=1, help_text="1 for the first submission; +1 for each set sent after a request for images."
    )
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


def heatmap_path(instance: "Prediction", filename: str) -> str:
    # A new name for every map written: a re-analysis never overwrites the overlay a report was signed with.
    return f"heatmaps/{instance.image.case_id}/{uuid.uuid4().hex}.png"


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
    heatmap = models.FileField(
        upload_to=heatmap_path,
        max_length=255,
        blank=True,
        help_text="Where the model looked: a PNG overlay of the malignancy Grad-CAM (empty when the model "
        "version makes none or the image was not assessed).",
    )
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

    def top_diagnoses(self, n: int = 3) -> list[tuple[str, float]]:
        """The AI differential's ``n`` most probable diagnoses as (label, probability), most probable first;
        empty when the model gives no class probabilities."""
        labels = dict(Diagnosis.choices)
        items = [
            (str(k), float(v))
            for k, v in (self.class_probabilities or {}).items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        ]
        items.sort(key=lambda kv: -kv[1])
        return [(labels.get(k, k), p) for k, p in items[:n]]

    @property
    def explanation(self) -> str:
        reasons = list(self.reasons or [])
        return explain_not_assessed(reasons) if self.assessment == Assessment.NOT_ASSESSED else ""


class Review(models.Model):
    """A dermatologist's assessment of a case. A correction is a new review that supersedes the earlier one."""

    case = models.ForeignKey(Case, on_delete=models.PROTECT, related_name="reviews")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="reviews")
    diagnosis = models.CharField(max_length=8, choices=Diagnosis.choices)
    malignant = models.BooleanField()
    management = models.CharField(max_length=16, choices=Management.choices)
    follow_up_months = models.PositiveSmallIntegerField(null=True, blank=True)
    notes = models.TextField(blank=True, max_length=5000)
    ai_flagged = models.BooleanField(
        null=True,
        blank=True,
        help_text="Whether the AI's risk was at or above its threshold; empty when not assessed.",
    )
    agrees_with_ai = models.BooleanField(
        null=True,
        blank=True,
        help_text="Derived: whether the malignant call matches the AI flag; empty when the AI did not assess.",
    )
    justification = models.TextField(
        blank=True, max_length=2000, help_text="Why an unusual combination of diagnosis and management."
    )
    correction_reason = models.TextField(
        blank=True,
        max_length=2000,
        help_text="Why this review corrects the earlier one (printed in the addendum).",
    )
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


class ImageRequestReason(models.TextChoices):
    BLURRED = "blurred", "Images blurred or out of focus"
    NO_DERMOSCOPY = "no_dermoscopy", "No dermoscopic image"
    WRONG_LESION = "wrong_lesion", "Wrong or unclear lesion"
    NEED_OVERVIEW = "need_overview", "Need a clinical overview photo"
    OTHER = "other", "Other"


class ImageRequest(models.Model):
    """A dermatologist sent a case back for better images; resolved when the clinician resubmits."""

    case = models.ForeignKey(Case, on_delete=models.PROTECT, related_name="image_requests")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    reason = models.CharField(max_length=16, choices=ImageRequestReason.choices)
    note = models.TextField(blank=True, max_length=2000)
    round = models.PositiveSmallIntegerField(help_text="The image round the clinician is asked to send.")
    created_at = models.DateTimeField(auto_now_add=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["case", "created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(reason__in=ImageRequestReason.values), name="image_request_reason_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"Image request for case {self.case_id}: {self.get_reason_display()}"


class NotificationStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"
    SKIPPED = "skipped", "Skipped (opted out)"


class Notification(models.Model):
    """One e-mail to one user: the outbox. It holds no patient-identifying data, only a link."""

    recipient = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="notifications"
    )
    kind = models.CharField(max_length=32)
    case = models.ForeignKey(
        Case, null=True, blank=True, on_delete=models.PROTECT, related_name="notifications"
    )
    subject = models.CharField(max_length=200)
    body = models.TextField()
    status = models.CharField(
        max_length=8, choices=NotificationStatus.choices, default=NotificationStatus.PENDING
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.TextField(blank=True)
    dedupe_key = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["recipient", "dedupe_key"], condition=~Q(dedupe_key=""), name="notification_dedupe"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} to {self.recipient_id} ({self.status})"


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
