"""Reads. Every page and API endpoint gets its objects through these functions, which start from the
visibility filters of ``cases.permissions``, so a clinician of another organization gets a 404 for a case id
they guess, whatever URL they try.
"""

import datetime as dt
import math
import statistics
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import Case as DbCase
from django.db.models import Count, F, OuterRef, Prefetch, QuerySet, Subquery, Value, When
from django.db.models.functions import Coalesce
from django.http import Http404
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from cases.models import (
    AuditEvent,
    Case,
    CaseStatus,
    ImageRequest,
    Lesion,
    LesionImage,
    Patient,
    Prediction,
    Report,
    Review,
    User,
)
from cases.permissions import (
    can_open_review_queue,
    cases_visible_to,
    lesions_visible_to,
    organizations_for,
    patients_visible_to,
    reports_visible_to,
)
from cases.vocabulary import Priority


def case_get(user: User, case_id: int | str) -> Case:
    """The case if ``user`` may see it, else Http404 (never 403: ids must not leak existence)."""
    try:
        case_pk = int(case_id)
    except (TypeError, ValueError):
        raise Http404("No such case.") from None
    try:
        return cases_visible_to(user).get(pk=case_pk)
    except Case.DoesNotExist:
        raise Http404("No such case.") from None


def prediction_heatmap(user: User, case_id: int | str, prediction_id: int | str) -> Prediction:
    """A prediction with a stored heatmap, of an image of a case ``user`` may see; else Http404 (the same
    answer for another organization's case, a wrong pairing and a prediction without a map)."""
    case = case_get(user, case_id)
    try:
        prediction_pk = int(prediction_id)
    except (TypeError, ValueError):
        raise Http404("No such heatmap.") from None
    prediction = (
        Prediction.objects.select_related("image__case").filter(pk=prediction_pk, image__case=case).first()
    )
    if prediction is None or not prediction.heatmap:
        raise Http404("No such heatmap.")
    return prediction


def case_detail(user: User, case_id: int | str) -> Case:
    """A visible case with images, predictions, reviews and reports loaded in a fixed number of queries."""
    case = case_get(user, case_id)
    predictions = Prediction.objects.select_related("model_version").order_by("-created_at")
    return (
        cases_visible_to(user)
        .prefetch_related(
            Prefetch(
                "images", queryset=LesionImage.objects.prefetch_related(Prefetch("predictions", predictions))
            ),
            Prefetch("reviews", queryset=Review.objects.select_related("reviewer").order_by("created_at")),
            Prefetch("reports", queryset=Report.objects.select_related("signer").order_by("created_at")),
            Prefetch(
                "image_requests",
                queryset=ImageRequest.objects.select_related("requested_by").order_by("created_at"),
            ),
        )
        .get(pk=case.pk)
    )


def patient_get(user: User, patient_id: int | str) -> Patient:
    try:
        return patients_visible_to(user).get(pk=int(patient_id))
    except (Patient.DoesNotExist, TypeError, ValueError):
        raise Http404("No such patient.") from None


def patients_search(user: User, query: str = "") -> QuerySet[Patient]:
    qs = patients_visible_to(user)
    return qs.filter(reference__icontains=query.strip()) if query.strip() else qs


def lesion_get(user: User, lesion_id: int | str) -> Lesion:
    try:
        return lesions_visible_to(user).get(pk=int(lesion_id))
    except (Lesion.DoesNotExist, TypeError, ValueError):
        raise Http404("No such lesion.") from None


def lesion_history(user: User, case: Case) -> QuerySet[Case]:
    """Earlier cases of the same lesion, newest first (for side-by-side follow-up)."""
    return (
        cases_visible_to(user)
        .filter(lesion_id=case.lesion_id, created_at__lt=case.created_at)
        .prefetch_related("images")
        .order_by("-created_at")
    )


REVIEWABLE_STATUSES = (CaseStatus.AWAITING_REVIEW,)


def review_queue(
    user: User,
    *,
    organization: int | None = None,
    band: str | None = None,
    status: str | None = None,
    priority: str | None = None,
) -> QuerySet[Case]:
    """Cases waiting for a dermatologist: urgent first, then by AI risk (a case the AI could not assess
    counts as the highest risk), then the longest waiting since submission.

    By default the queue holds cases awaiting review; ``status`` widens it (e.g. to ``analysing``).
    """
    if not can_open_review_queue(user):
        return Case.objects.none()
    qs = cases_visible_to(user).filter(status=status or CaseStatus.AWAITING_REVIEW)
    if organization:
        qs = qs.filter(organization_id=organization)
    if band:
        qs = qs.filter(risk_band=band)
    if priority:
        qs = qs.filter(priority=priority)
    return qs.order_by(*QUEUE_ORDER)


# Urgent before routine; unknown risk (not assessed) as the highest; then first come, first served.
QUEUE_ORDER = (
    DbCase(When(priority=Priority.URGENT, then=Value(0)), default=Value(1)).asc(),
    Coalesce(F("risk"), Value(1.0)).desc(),
    Coalesce(F("submitted_at"), F("created_at")).asc(),
    "pk",
)


# Case lists: filters, ordering and counts (pages and API views pass what the user chose) ---------------

# Filter name -> lookup. The API validates the values (CaseFilterSerializer); pages pass what their forms chose.
CASE_FILTERS = {
    "status": "status",
    "risk_band": "risk_band",
    "priority": "priority",
    "organization": "organization_id",
    "patient": "lesion__patient_id",
    "lesion": "lesion_id",
    "submitted_by": "submitted_by_id",
    "created_after": "created_at__gte",
    "created_before": "created_at__lt",
}


def case_ordering(value: str) -> list:
    """``created_at``, ``updated_at`` or ``risk``, ``-`` for descending; ties by newest then id. Cases without
    a risk yet come last either way."""
    field = value.lstrip("-")
    if field == "risk":
        expression = (
            F("risk").desc(nulls_last=True) if value.startswith("-") else F("risk").asc(nulls_last=True)
        )
        return [expression, "-created_at", "-pk"]
    return [value, "-pk" if value.startswith("-") else "pk"]


def cases_filter(qs: QuerySet[Case], filters: Mapping[str, Any]) -> QuerySet[Case]:
    """Narrow ``qs`` by the ``CASE_FILTERS`` named in ``filters`` (other keys are ignored)."""
    return qs.filter(**{CASE_FILTERS[name]: value for name, value in filters.items() if name in CASE_FILTERS})


def with_list_fields(qs: QuerySet[Case]) -> QuerySet[Case]:
    """Annotate ``image_count`` and ``newest_report_uid``. Correlated subqueries rather than JOIN + GROUP BY:
    only the page's rows are counted, and the paginator's COUNT(*) drops the unused annotations instead of
    grouping every case."""
    images = LesionImage.objects.filter(case=OuterRef("pk")).order_by().values("case").annotate(n=Count("pk"))
    newest_report = (
        Report.objects.filter(case=OuterRef("pk")).order_by("-created_at", "-pk").values("uid")[:1]
    )
    return qs.annotate(
        image_count=Coalesce(Subquery(images.values("n")), 0), newest_report_uid=Subquery(newest_report)
    )


def cases_list(*, user: User, filters: Mapping[str, Any] | None = None) -> QuerySet[Case]:
    """The cases ``user`` may see, narrowed by ``filters`` (``CASE_FILTERS``, plus ``ordering``), with
    ``image_count`` and ``newest_report_uid``. Without an ``ordering`` the newest come first."""
    filters = filters or {}
    qs = with_list_fields(cases_filter(cases_visible_to(user), filters))
    return qs.order_by(*case_ordering(filters["ordering"])) if filters.get("ordering") else qs


def case_status_counts(*, user: User, submitted_by: User | None = None) -> dict[str, int]:
    """Visible cases per status (every status, zeros included), optionally only one submitter's."""
    qs = cases_visible_to(user)
    if submitted_by is not None:
        qs = qs.filter(submitted_by=submitted_by)
    counts = dict(qs.order_by().values_list("status").annotate(n=Count("pk")).values_list("status", "n"))
    return {status: counts.get(status, 0) for status in CaseStatus.values}


@dataclass(frozen=True)
class QueueCounts:
    total: int
    by_band: dict[str, int]  # risk band -> cases (with the organization filter, without the band filter)
    by_organization: list[tuple[str, int]]  # organization name -> cases (with the band filter), by name


def review_queue_counts(
    *,
    user: User,
    organization: int | None = None,
    band: str | None = None,
    status: str | None = None,
    priority: str | None = None,
) -> QueueCounts:
    """What the queue page shows beside the list: how many cases in all (every filter), per band and per
    organization. Each of those two leaves out its own filter, so that the other choices stay visible, and
    counts every priority."""
    queue = review_queue(user, organization=organization, band=band, status=status, priority=priority)
    unbanded = review_queue(user, organization=organization, status=status).order_by()
    by_band = dict(unbanded.values_list("risk_band").annotate(n=Count("pk")).values_list("risk_band", "n"))
    by_organization = dict(
        review_queue(user, band=band, status=status)
        .order_by()
        .values_list("organization__name")
        .annotate(n=Count("pk"))
        .values_list("organization__name", "n")
    )
    return QueueCounts(total=queue.count(), by_band=by_band, by_organization=sorted(by_organization.items()))


def report_get(user: User, report_uid: str | uuid.UUID) -> Report:
    try:
        return reports_visible_to(user).get(uid=uuid.UUID(str(report_uid)))
    except (Report.DoesNotExist, ValueError, TypeError):
        raise Http404("No such report.") from None


def current_review(case: Case) -> Review | None:
    return case.reviews.filter(superseded_by__isnull=True).order_by("-created_at").first()


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


def audit_events_filter(
    events: QuerySet[AuditEvent],
    *,
    actor: int | None = None,
    since: str | None = None,
    until: str | None = None,
    action: str = "",
    object_type: str = "",
    object_id: str = "",
    organization: str = "",
) -> QuerySet[AuditEvent]:
    """Narrow audit events by actor, time window (dates or ISO date-times), action, object and organization."""
    start, stop = parse_when(since), parse_when(until, end=True)
    if actor:
        events = events.filter(actor_id=actor)
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
    return events.select_related("actor", "organization")


def audit_events(user: User, **filters) -> QuerySet[AuditEvent]:
    """The audit trail for platform admins (nothing for anyone else), narrowed by ``audit_events_filter``."""
    if not user.is_authenticated or not user.is_platform_admin:
        return AuditEvent.objects.none()
    return audit_events_filter(AuditEvent.objects.all(), **filters)


@dataclass(frozen=True)
class Turnaround:
    """Time from submission to the first signed report, for one organization over a window."""

    organization_id: int
    organization: str
    reports: int
    median_hours: float | None
    p90_hours: float | None


def _percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending list (no interpolation: a value that happened)."""
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


def turnaround_by_organization(
    user: User, *, days: int = 7, now: dt.datetime | None = None
) -> list[Turnaround]:
    """Per visible organization, the median and 90th percentile hours from (last) submission to the first
    signed report, for reports signed in the last ``days`` days. Addenda do not count."""
    now = now or timezone.now()
    since = now - dt.timedelta(days=days)
    rows = (
        reports_visible_to(user)
        .filter(supersedes__isnull=True, signed_at__gte=since, signed_at__lte=now)
        .values_list("case__organization_id", "case__organization__name", "signed_at", "case__submitted_at")
    )
    durations: dict[tuple[int, str], list[float]] = {}
    for org_id, name, signed_at, submitted_at in rows:
        if submitted_at is None:
            continue
        hours = max(0.0, (signed_at - submitted_at).total_seconds() / 3600)
        durations.setdefault((org_id, name), []).append(hours)
    result = []
    for organization in organizations_for(user).order_by("name"):
        values = sorted(durations.get((organization.pk, organization.name), []))
        result.append(
            Turnaround(
                organization_id=organization.pk,
                organization=organization.name,
                reports=len(values),
                median_hours=round(statistics.median(values), 2) if values else None,
                p90_hours=round(_percentile(values, 0.9), 2) if values else None,
            )
        )
    return result
