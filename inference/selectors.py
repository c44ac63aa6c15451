"""Reads of model versions."""

from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Min, QuerySet
from django.utils import timezone

from inference.models import ModelStatus, ModelVersion


def active_model_version() -> ModelVersion | None:
    """The one active model version, or None when none has been activated yet."""
    return ModelVersion.objects.filter(status=ModelStatus.ACTIVE).first()


def model_versions() -> QuerySet[ModelVersion]:
    """All registered versions, newest first."""
    return ModelVersion.objects.select_related("registered_by").order_by("-created_at", "-pk")


def model_version_get(*, name: str, version: str) -> ModelVersion | None:
    return ModelVersion.objects.filter(name=name, version=version).first()


def previous_model_version() -> ModelVersion | None:
    """The version that was active before the current one (the rollback target), if any."""
    current = active_model_version()
    qs = ModelVersion.objects.filter(activated_at__isnull=False).exclude(status=ModelStatus.ACTIVE)
    if current is not None and current.activated_at is not None:
        qs = qs.filter(activated_at__lt=current.activated_at)
    return qs.order_by("-activated_at", "-pk").first()


def analysis_queue_unavailable_since() -> datetime | None:
    """When the oldest case still waiting to be queued for analysis was stored (the broker was down at its
    submit and the sweeper could not publish it yet); None when every stored case has been queued."""
    from cases.models import Case, CaseStatus

    grace = timezone.now() - timedelta(seconds=settings.TELEDER_PUBLISH_GRACE_S)
    return Case.objects.filter(
        status=CaseStatus.SUBMITTED, enqueued_at__isnull=True, updated_at__lt=grace
    ).aggregate(since=Min("updated_at"))["since"]
