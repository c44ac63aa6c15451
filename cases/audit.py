"""The audit trail: every write and every read of clinical data records one AuditEvent."""

from typing import Any

from django.db import models

from cases.models import AuditEvent, Organization
from teleder.context import current_ip_address, current_request_id


class AuditAction(models.TextChoices):
    """Every kind of audit event. ``audit_record`` takes one of these, never a free string
    (tests/test_architecture.py checks every call)."""

    ORGANIZATION_CREATE = "organization.create"
    USER_CREATE = "user.create"
    USER_NOTIFICATIONS = "user.notifications"
    ORGANIZATION_TRAINING_SHARING = "organization.training_sharing"
    API_LOGIN = "api.login"
    API_LOGOUT = "api.logout"
    PATIENT_CREATE = "patient.create"
    LESION_CREATE = "lesion.create"
    CASE_CREATE = "case.create"
    CASE_ADD_IMAGES = "case.add_images"
    CASE_STATUS = "case.status"
    CASE_REQUEST_IMAGES = "case.request_images"
    CASE_VIEW = "case.view"
    IMAGE_VIEW = "image.view"
    HEATMAP_VIEW = "heatmap.view"
    REVIEW_CREATE = "review.create"
    REVIEW_CORRECT = "review.correct"
    REPORT_CREATE = "report.create"
    REPORT_DOWNLOAD = "report.download"
    MODEL_REGISTER = "model.register"
    MODEL_ACTIVATE = "model.activate"
    MODEL_SHADOW_EVALUATE = "model.shadow_evaluate"
    TRAINING_SET_EXPORT = "training_set.export"
    CASE_FHIR_EXPORT = "case.fhir_export"
    CASE_DICOM_EXPORT = "case.dicom_export"
    CASE_DICOM_IMPORT = "case.dicom_import"
    CASE_ISIC_EXPORT = "case.isic_export"
    AUDIT_EXPORT = "audit.export"
    REFERENCE_SET_IMPORT = "reference_set.import"


def audit_record(
    *,
    actor: Any,
    action: AuditAction,
    obj: models.Model,
    organization: Organization | None = None,
    **details: Any,
) -> AuditEvent:
    """Append an event. The client address and request id come from the current request, if any."""
    if organization is None:
        organization = getattr(obj, "organization", None)
        if organization is None and isinstance(obj, Organization):
            organization = obj
    return AuditEvent.objects.create(
        actor=actor if getattr(actor, "is_authenticated", False) else None,
        action=action,
        object_type=obj._meta.model_name,
        object_id=str(obj.pk),
        organization=organization,
        ip_address=current_ip_address(),
        request_id=current_request_id() or "",
        details=details,
    )
