"""CSV export of the audit trail, for platform admins: a download view and the ``export_audit`` command.

Cells that a spreadsheet would run as a formula (starting with ``= + - @`` or a control character) are
prefixed with a quote (OWASP "CSV injection"). The export itself is recorded in the audit trail.
"""

import csv
import datetime as dt
import json
from collections.abc import Iterable, Iterator
from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from cases.audit import audit_record
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


def parse_when(value: str | None, *, end: bool = False) -> dt.datetime | None:
    """A date (whole day) or an ISO date-time; None when empty. ValidationError when unreadable."""
    if not value:
        return None
    moment = parse_datetime(value)
    if moment is None:
        day = parse_date(value)
        if day is None:
            raise ValidationError(f"{value!r} is not a date (YYYY-MM-DD) or an ISO date-time.")
        moment = dt.datetime.combine(day + dt.timedelta(days=1) if end else day, dt.time.min)
    return moment if timezone.is_aware(moment) else timezone.make_aware(moment, dt.UTC)


def filter_events(
    events: QuerySet[AuditEvent],
    *,
    since: str | None = None,
    until: str | None = None,
    action: str = "",
    object_type: str = "",
    object_id: str = "",
    organization: str = "",
) -> QuerySet[AuditEvent]:
    start, stop = parse_when(since), parse_when(until, end=True)
    if start:
        events = events.filter(created_at__gte=start)
    if stop:
        events = events.filter(created_at__lt=stop)
    if action:
        events = events.filter(action=action)
    if object_type:
        events = events.filter(object_type=object_type)
    if object_id:
        events = events.filter(object_id=object_id)
    if organization:
        events = events.filter(organization__slug=organization)
    return events.select_related("actor", "organization").order_by("created_at", "id")


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
        events = filter_events(audit_events(user), **filters)
    except ValidationError as exc:
        return HttpResponse(" ".join(exc.messages), status=400, content_type="text/plain; charset=utf-8")
    audit_record(
        actor=user,
        action="audit.export",
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
