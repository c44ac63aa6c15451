"""The audit trail: every write and every read of clinical data records one AuditEvent."""

from typing import Any

from django.db import models

from cases.models import AuditEvent, Organization
from teleder.context import current_ip_address, current_request_id


def audit_record(
    *,
    actor: Any,
    action: str,
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
