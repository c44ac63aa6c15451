"""Registered model versions. Exactly one is active at a time (a partial unique constraint holds this)."""

from django.conf import settings
from django.db import models
from django.db.models import Q

from inference.package import risk_band, risk_bands_of


class ModelStatus(models.TextChoices):
    CANDIDATE = "candidate", "Candidate"
    ACTIVE = "active", "Active"
    RETIRED = "retired", "Retired"


class ModelVersion(models.Model):
    name = models.CharField(max_length=100)
    version = models.CharField(max_length=50)
    task = models.CharField(max_length=16, default="binary")
    status = models.CharField(max_length=16, choices=ModelStatus.choices, default=ModelStatus.CANDIDATE)
    sha256 = models.CharField(max_length=64, help_text="sha256 of the package's manifest.json.")
    package_path = models.CharField(max_length=500, help_text="Folder holding the validated package.")
    manifest = models.JSONField(default=dict)
    metrics = models.JSONField(default=dict, blank=True)
    model_card = models.TextField(blank=True)
    threshold = models.FloatField(help_text="Decision threshold on the ensemble probability.")
    registered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    activated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["name", "version"], name="model_version_unique"),
            models.UniqueConstraint(
                fields=["status"], condition=Q(status="active"), name="model_version_one_active"
            ),
            models.CheckConstraint(
                condition=Q(status__in=ModelStatus.values), name="model_version_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(threshold__gte=0.0, threshold__lte=1.0),
                name="model_version_threshold_in_unit_interval",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} {self.version}"

    @property
    def risk_bands(self) -> dict[str, float]:
        """The probability bounds of the medium and high risk bands (``inference.package`` holds the rule)."""
        return risk_bands_of(self.manifest, self.threshold)

    def risk_band(self, probability: float) -> str:
        """``low``, ``medium`` or ``high`` for an ensemble probability of this version."""
        return risk_band(probability, self.risk_bands)


class ShadowEvaluation(models.Model):
    """A candidate scored on recently reviewed cases beside the then active version (champion/challenger).

    ``metrics`` holds ``{"candidate": {...}, "active": {...}}`` with the same figures as the agreement
    dashboard; stored predictions are never touched.
    """

    candidate = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="shadow_evaluations")
    baseline = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    days = models.PositiveIntegerField()
    cases = models.PositiveIntegerField()
    metrics = models.JSONField(default=dict)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.candidate} vs {self.baseline or 'no active model'} on {self.cases} cases"
