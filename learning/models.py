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
