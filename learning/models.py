"""What the learning loop keeps: each organization's consent to share its reviewed cases as training data."""

from django.conf import settings
from django.db import models

from cases.models import Organization


class TrainingDataSharing(models.Model):
    """An organization's opt-in to export its reviewed cases as training data (default: no row = off)."""

    organization = models.OneToOneField(
        Organization, on_delete=models.CASCADE, related_name="training_data_sharing"
    )
    enabled = models.BooleanField(default=False)
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    changed_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "training data sharing"

    def __str__(self) -> str:
        return f"{self.organization}: {'shares' if self.enabled else 'does not share'} training data"


class DriftSnapshot(models.Model):
    """One day's drift check for one model version and organization: the last window against a reference."""

    model_version = models.ForeignKey(
        "inference.ModelVersion", on_delete=models.CASCADE, related_name="drift_snapshots"
    )
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="drift_snapshots")
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    images = models.PositiveIntegerField()
    features = models.JSONField(default=list, help_text="Per feature: reference/current counts, PSI, KS.")
    summary = models.JSONField(default=dict, help_text="Current window: score and image statistics.")
    alerts = models.JSONField(default=list, help_text="Features whose shift crossed the alert threshold.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        state = f"{len(self.alerts)} alert(s)" if self.alerts else "no alert"
        return f"drift {self.model_version} / {self.organization}: {state}"
