"""Reads, and the one place that decides who may see what.

Every page and API endpoint gets its objects through these functions, so a clinician of another organization
gets a 404 for a case id they guess, whatever URL they try.
"""

import datetime as dt
import uuid

from django.core.exceptions import ValidationError
from django.db.models import F, Prefetch, Q, QuerySet
from django.http import Http404
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from cases.models import (
    AuditEvent,
    Case,
    CaseStatus,
    Lesion,
    LesionImage,
    Organization,
    Patient,
    Prediction,
    Report,
    Review,
    User,
)
from cases.vocabulary import Role


def organizations_for(user: User) -> QuerySet[Organization]:
    """Organizations the user works for (all of them for platform admins)."""
    if not user.is_authenticated:
        return Organization.objects.none()
    if user.is_platform_admin:
        return Organization.objects.all()
    return user.organizations.all()


def _org_filter(user: User, prefix: str = "") -> Q | None:
    """None means unrestricted (platform admin)."""
    if user.is_platform_admin:
        return None
    return Q(**{f"{prefix}organization__in": user.organizations.all()})


def cases_visible_to(user: User) -> QuerySet[Case]:
    if not user.is_authenticated:
        return Case.objects.none()
    qs = Case.objects.select_related("organization", "lesion__patient", "submitted_by", "model_version")
    restriction = _org_filter(user)
    return qs if restriction is None else qs.filter(restriction)


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
        )
        .get(pk=case.pk)
    )


def patients_visible_to(user: User) -> QuerySet[Patient]:
    if not user.is_authenticated:
        return Patient.objects.none()
    qs = Patient.objects.select_related("organization")
    restriction = _org_filter(user)
    return qs if restriction is None else qs.filter(restriction)


def patient_get(user: User, patient_id: int | str) -> Patient:
    try:
        return patients_visible_to(user).get(pk=int(patient_id))
    except (Patient.DoesNotExist, TypeError, ValueError):
        raise Http404("No such patient.") from None


def patients_search(user: User, query: str = "") -> QuerySet[Patient]:
    qs = patients_visible_to(user)
    return qs.filter(reference__icontains=query.strip()) if query.strip() else qs


def lesions_visible_to(user: User) -> QuerySet[Lesion]:
    if not user.is_authenticated:
        return Lesion.objects.none()
    qs = Lesion.objects.select_related("patient__organization")
    restriction = _org_filter(user, "patient__")
    return qs if restriction is None else qs.filter(restriction)


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


def can_submit(user: User, organization: Organization) -> bool:
    if not user.is_authenticated or user.role not in (Role.CLINICIAN, Role.ADMIN):
        return False
    return user.is_platform_admin or user.organizations.filter(pk=organization.pk).exists()


def can_review(user: User, case: Case) -> bool:
    """Only dermatologists who serve the case's organization review and sign."""
    return (
        user.is_authenticated
        and user.role == Role.DERMATOLOGIST
        and user.organizations.filter(pk=case.organization_id).exists()
    )


REVIEWABLE_STATUSES = (CaseStatus.AWAITING_REVIEW,)


def review_queue(
    user: User,
    *,
    organization: int | None = None,
    band: str | None = None,
    status: str | None = None,
) -> QuerySet[Case]:
    """Cases waiting for a dermatologist: those the AI could not assess, then highest AI risk first, then the
    longest waiting.

    By default the queue holds cases awaiting review; ``status`` widens it (e.g. to ``analysing``).
    """
    if not user.is_authenticated or user.role not in (Role.DERMATOLOGIST, Role.ADMIN):
        return Case.objects.none()
    qs = cases_visible_to(user).filter(status=status or CaseStatus.AWAITING_REVIEW)
    if organization:
        qs = qs.filter(organization_id=organization)
    if band:
        qs = qs.filter(risk_band=band)
    # Cases the AI could not assess (no risk) come first: the AI gives them no priority, so a person must.
    return qs.order_by(F("risk").desc(nulls_first=True), "created_at", "pk")


def reports_visible_to(user: User) -> QuerySet[Report]:
    if not user.is_authenticated:
        return Report.objects.none()
    qs = Report.objects.select_related("case__organization", "signer", "review")
    restriction = _org_filter(user, "case__")
    return qs if restriction is None else qs.filter(restriction)


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
