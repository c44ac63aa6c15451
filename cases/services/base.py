"""What every service shares: the case status machine and the audited save.

Only services change a case's status, through ``_transition``; anything the table does not allow raises
``IllegalTransition`` (HTTP 409 in the API, a form error on pages).
"""

from collections.abc import Iterable
from typing import Any, TypeVar

from django.core.exceptions import ValidationError
from django.db import models

from cases.audit import AuditAction, audit_record
from cases.models import Case, CaseStatus, Organization, User

M = TypeVar("M", bound=models.Model)

# The status machine. Anything not listed here is refused.
TRANSITIONS: dict[str, frozenset[str]] = {
    # A draft collects images; it is submitted explicitly and never changes its images afterwards.
    CaseStatus.DRAFT: frozenset({CaseStatus.SUBMITTED}),
    CaseStatus.SUBMITTED: frozenset({CaseStatus.ANALYSING, CaseStatus.FAILED}),
    CaseStatus.ANALYSING: frozenset({CaseStatus.AWAITING_REVIEW, CaseStatus.FAILED}),
    # A dermatologist reviews it, or returns it to the clinician for better images.
    CaseStatus.AWAITING_REVIEW: frozenset({CaseStatus.REVIEWED, CaseStatus.NEEDS_IMAGES}),
    # The clinician adds images and resubmits: the whole case is analysed again.
    CaseStatus.NEEDS_IMAGES: frozenset({CaseStatus.SUBMITTED}),
    CaseStatus.REVIEWED: frozenset({CaseStatus.REPORTED}),
    # A correction after the report: a new review, then an addendum report.
    CaseStatus.REPORTED: frozenset({CaseStatus.REVIEWED}),
    CaseStatus.FAILED: frozenset({CaseStatus.SUBMITTED}),
}


class IllegalTransition(ValidationError):
    """A status change the case's status machine does not allow."""


class StorageUnavailable(Exception):
    """The file store (local disk or S3) refused a write. Nothing of the request was kept: the database
    transaction is rolled back and the files already written for it are removed."""

    message = "The image store is unavailable, so nothing was stored. Try again in a few minutes."


def _check_transition(case: Case, to: str) -> None:
    if to not in TRANSITIONS.get(case.status, frozenset()):
        raise IllegalTransition(
            f"A case that is {case.get_status_display().lower()} cannot become "
            f"{CaseStatus(to).label.lower()}.",
            code="illegal_transition",
        )


def _transition(
    case: Case, to: str, *, actor: User | None, update_fields: Iterable[str] = (), **details
) -> None:
    _check_transition(case, to)
    previous = case.status
    case.status = to
    case.save(update_fields=["status", "updated_at", *update_fields])
    audit_record(
        actor=actor, action=AuditAction.CASE_STATUS, obj=case, **{"from": previous, "to": to}, **details
    )


def _save_audited(
    obj: M,
    *,
    actor: User | None,
    action: AuditAction,
    organization: Organization | None = None,
    **details: Any,
) -> M:
    """Validate (``full_clean``), save and record one audit event: the trio every create shares."""
    obj.full_clean()
    obj.save()
    audit_record(actor=actor, action=action, obj=obj, organization=organization, **details)
    return obj
