"""Dermatologists' reviews, and the case's side of the signed report."""

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from cases.audit import AuditAction
from cases.models import Case, CaseStatus, Review, User
from cases.permissions import can_review
from cases.selectors import current_review
from cases.services.base import _check_transition, _save_audited, _transition
from cases.services.queue import enqueue_report
from cases.vocabulary import Diagnosis, Management


def _ai_says_malignant(case: Case) -> bool | None:
    if case.risk is None or case.model_version is None:
        return None
    return case.risk >= case.model_version.threshold


@transaction.atomic
def review_submit(
    *,
    actor: User,
    case: Case,
    diagnosis: str,
    malignant: bool,
    management: str,
    follow_up_months: int | None = None,
    notes: str = "",
    agrees_with_ai: bool | None = None,
) -> Review:
    """Record a dermatologist's review, move the case to reviewed and, on commit, generate the signed report.

    On a reported case this is a correction: the new review supersedes the last one and the report task
    issues an addendum. ``agrees_with_ai`` defaults to whether the dermatologist's malignant/benign call
    matches the AI's at the model's threshold.
    """
    case = (
        Case.objects.select_for_update(of=("self",))
        .select_related("model_version", "organization")
        .get(pk=case.pk)
    )
    if not can_review(actor, case):
        raise PermissionDenied("Only a dermatologist serving this organization can review this case.")
    if diagnosis not in Diagnosis.values:
        raise ValidationError({"diagnosis": "Choose a diagnosis from the list."})
    if management not in Management.values:
        raise ValidationError({"management": "Choose a management option."})
    if management == Management.FOLLOW_UP:
        if follow_up_months is None or not 1 <= int(follow_up_months) <= 60:
            raise ValidationError({"follow_up_months": "Give the follow-up interval in months (1-60)."})
    else:
        follow_up_months = None
    _check_transition(case, CaseStatus.REVIEWED)
    ai_malignant = _ai_says_malignant(case)
    if agrees_with_ai is None:
        agrees_with_ai = ai_malignant is not None and ai_malignant == bool(malignant)
    previous = current_review(case)
    review = Review(
        case=case,
        reviewer=actor,
        diagnosis=diagnosis,
        malignant=bool(malignant),
        management=management,
        follow_up_months=follow_up_months,
        notes=(notes or "").strip(),
        agrees_with_ai=bool(agrees_with_ai),
        supersedes=previous if case.status == CaseStatus.REPORTED else None,
    )
    _save_audited(
        review,
        actor=actor,
        action=AuditAction.REVIEW_CREATE,
        organization=case.organization,
        case=case.pk,
        diagnosis=diagnosis,
        agrees_with_ai=review.agrees_with_ai,
        correction=review.supersedes_id is not None,
    )
    case.report_error = ""
    _transition(case, CaseStatus.REVIEWED, actor=actor, update_fields=["report_error"])
    transaction.on_commit(lambda: enqueue_report(review.pk))
    return review


def case_mark_reported(*, case_id: int, actor: User | None = None) -> Case:
    """The signed report is stored: the case becomes reported."""
    with transaction.atomic():
        case = Case.objects.select_for_update().get(pk=case_id)
        case.report_error = ""
        _transition(case, CaseStatus.REPORTED, actor=actor, update_fields=["report_error"])
    return case


def case_record_report_error(*, case_id: int, error: str) -> None:
    """Show why the report could not be made yet (the report task retries; the case stays reviewed)."""
    Case.objects.filter(pk=case_id).update(report_error=error[:2000], updated_at=timezone.now())
