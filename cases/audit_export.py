"""CSV export of the audit trail, for platform admins: a download view and the ``export_audit`` command.

Cells that a spreadsheet would run as a formula (starting with ``= + - @`` or a control character) are
prefixed with a quote (OWASP "CSV injection"). The export itself is recorded in the audit trail.
"""

import csv
import json
from collections.abc import Iterable, Iterator
from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.utils import timezone

from cases.audit import AuditAction, audit_record
from cases.models import AuditEvent, User
from cases.selectors import audit_events

COLUMNS = [
    "time",
    "actor_id",
    "actor",
    "action",
    "object_type",
    "object_id",
    "organization",
    "ip_address",
    "request_id",
    "details",
]
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return f"'{text}" if text.startswith(_FORMULA_START) else text


def audit_rows(events: Iterable[AuditEvent]) -> Iterator[list[str]]:
    """The header, then one row per event, every cell safe to open in a spreadsheet."""
    yield COLUMNS
    for event in events:
        yield [
            _cell(value)
            for value in (
                event.created_at.isoformat(),
                event.actor_id or "",
                event.actor.username if event.actor_id else "system",
                event.action,
                event.object_type,
                event.object_id,
                event.organization.slug if event.organization_id else "",
                event.ip_address or "",
                event.request_id,
                json.dumps(event.details, sort_keys=True, default=str),
            )
        ]


class _Echo:
    def write(self, value: str) -> str:
        return value


def audit_export(request: HttpRequest) -> HttpResponse:
    """GET /admin/audit/export.csv?since=YYYY-MM-DD&until=...&action=&object_type=&object_id=&organization="""
    user: User = request.user
    if not user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    if not user.is_platform_admin:
        raise PermissionDenied("Only administrators can export the audit trail.")
    filters = {
        key: request.GET.get(key, "").strip()[:100]
        for key in ("since", "until", "action", "object_type", "object_id", "organization")
    }
    try:
        events = audit_events(user, **filters).order_by("created_at", "id")
    except ValidationError as exc:
        return HttpResponse(" ".join(exc.messages), status=400, content_type="text/plain; charset=utf-8")
    audit_record(
        actor=user,
        action=AuditAction.AUDIT_EXPORT,
        obj=user,
        rows=events.count(),
        filters={key: value for key, value in filters.items() if value},
    )
    writer = csv.writer(_Echo())
    response = StreamingHttpResponse(
        (writer.writerow(row) for row in audit_rows(events.iterator(chunk_size=2000))),
        content_type="text/csv; charset=utf-8",
    )
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    response["Content-Disposition"] = f'attachment; filename="teleder-audit-{stamp}.csv"'
    response["Cache-Control"] = "no-store"
    return response
