"""Dermatologists' reviews (the rules of ``cases.review_rules``), corrections of issued reports, requests for
better images, and the case's side of the signed report."""

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from cases import review_rules
from cases.audit import AuditAction, audit_record
from cases.models import Case, CaseStatus, ImageRequest, ImageRequestReason, Review, User
from cases.permissions import can_review
from cases.selectors import current_review
from cases.services.base import IllegalTransition, _check_transition, _save_audited, _transition
from cases.services.queue import enqueue_report


class ReviewAlreadyExists(IllegalTransition):
    """A plain review of a case that already has one (a double click, a second tab, a retried request).

    A change of an issued report is an explicit correction (``review_correct``), never a second review."""

    def __init__(self, review: Review) -> None:
        self.review_id = review.pk
        super().__init__(
            f"This case was already reviewed (review {review.pk} by {review.reviewer.display_name}). "
            "To change the report, use 'Correct this report' and give a reason.",
            code="already_reviewed",
        )


def _ai_flag(case: Case) -> bool | None:
    threshold = case.model_version.threshold if case.model_version_id else None
    return review_rules.ai_flagged(risk=case.risk, threshold=threshold)


def _check_agreement(
    claimed: bool | None, *, flagged: bool | None, malignant: bool, case: Case
) -> bool | None:
    """The derived agreement; a client's claim that contradicts it is refused, never silently replaced."""
    derived = review_rules.agrees_with_ai(flagged=flagged, malignant=malignant)
    if claimed is None or claimed == derived:
        return derived
    if flagged is None:
        message = "The AI did not assess this case: there is no AI assessment to confirm or override."
    else:
        ai = "flagged this lesion" if flagged else "did not flag this lesion"
        call = "malignant" if malignant else "benign"
        risk = (
            f" (risk {case.risk:.2f}, threshold {case.model_version.threshold:.2f})"
            if case.risk is not None
            else ""
        )
        verb = "confirm" if claimed else "override"
        message = (
            f"You chose to {verb} the AI, but the AI {ai}{risk} and you called the lesion {call}: "
            f"that {'overrides' if claimed else 'confirms'} it. Check the AI choice or the malignant call."
        )
    raise ValidationError({"agrees_with_ai": message})


def _locked_for_review(actor: User, case: Case) -> Case:
    case = (
        Case.objects.select_for_update(of=("self",))
        .select_related("model_version", "organization")
        .get(pk=case.pk)
    )
    if not can_review(actor, case):
        raise PermissionDenied("Only a dermatologist serving this organization can review this case.")
    return case


def _review_create(
    *,
    actor: User,
    case: Case,
    supersedes: Review | None,
    diagnosis: str,
    malignant: bool | None,
    management: str,
    follow_up_months: int | None,
    notes: str,
    agrees_with_ai: bool | None,
    justification: str,
    correction_reason: str = "",
) -> Review:
    checked = review_rules.check_review(
        diagnosis=diagnosis,
        malignant=malignant,
        management=management,
        follow_up_months=follow_up_months,
        justification=justification,
    )
    flagged = _ai_flag(case)
    agreement = _check_agreement(agrees_with_ai, flagged=flagged, malignant=checked.malignant, case=case)
    review = Review(
        case=case,
        reviewer=actor,
        diagnosis=checked.diagnosis,
        malignant=checked.malignant,
        management=checked.management,
        follow_up_months=checked.follow_up_months,
        notes=(notes or "").strip(),
        ai_flagged=flagged,
        agrees_with_ai=agreement,
        justification=checked.justification,
        correction_reason=correction_reason,
        supersedes=supersedes,
    )
    _save_audited(
        review,
        actor=actor,
        action=AuditAction.REVIEW_CORRECT if supersedes else AuditAction.REVIEW_CREATE,
        organization=case.organization,
        case=case.pk,
        diagnosis=checked.diagnosis,
        malignant=checked.malignant,
        management=checked.management,
        ai_flagged=flagged,
        agrees_with_ai=agreement,
        unusual=list(checked.unusual),
        justification=checked.justification or None,
        correction=supersedes is not None,
        supersedes=supersedes.pk if supersedes else None,
        reason=correction_reason or None,
    )
    case.report_error = ""
    _transition(case, CaseStatus.REVIEWED, actor=actor, update_fields=["report_error"])
    transaction.on_commit(lambda: enqueue_report(review.pk))
    return review


@transaction.atomic
def review_submit(
    *,
    actor: User,
    case: Case,
    diagnosis: str,
    malignant: bool | None,
    management: str,
    follow_up_months: int | None = None,
    notes: str = "",
    agrees_with_ai: bool | None = None,
    justification: str = "",
) -> Review:
    """Record a dermatologist's review of a case awaiting review, move it to reviewed and, on commit,
    generate the signed report.

    The rules of ``cases.review_rules`` apply (``malignant=None`` derives it from the diagnosis). Agreement
    with the AI is derived from the AI flag and the malignant call; a claimed ``agrees_with_ai`` that
    contradicts it is refused. A case that already has a review raises ``ReviewAlreadyExists`` (409 in the
    API) with that review's id: a change is an explicit ``review_correct``.
    """
    case = _locked_for_review(actor, case)
    if case.status in (CaseStatus.REVIEWED, CaseStatus.REPORTED):
        existing = current_review(case)
        if existing is not None:
            raise ReviewAlreadyExists(existing)
    _check_transition(case, CaseStatus.REVIEWED)
    return _review_create(
        actor=actor,
        case=case,
        supersedes=None,
        diagnosis=diagnosis,
        malignant=malignant,
        management=management,
        follow_up_months=follow_up_months,
        notes=notes,
        agrees_with_ai=agrees_with_ai,
        justification=justification,
    )


MIN_CORRECTION_REASON_CHARS = 10


@transaction.atomic
def review_correct(
    *,
    actor: User,
    case: Case,
    reason: str,
    diagnosis: str,
    malignant: bool | None,
    management: str,
    follow_up_months: int | None = None,
    notes: str = "",
    agrees_with_ai: bool | None = None,
    justification: str = "",
) -> Review:
    """Correct the issued report of a case: a new review that supersedes the current one, with a required
    reason; the report task issues an addendum that prints the reason. The same rules as ``review_submit``."""
    case = _locked_for_review(actor, case)
    reason = (reason or "").strip()
    if len(reason) < MIN_CORRECTION_REASON_CHARS:
        raise ValidationError(
            {
                "reason": f"Give the reason for the correction (at least {MIN_CORRECTION_REASON_CHARS} characters)."
            }
        )
    if case.status == CaseStatus.REVIEWED:
        raise IllegalTransition(
            "The report of this case is still being generated; correct it once it is issued.",
            code="illegal_transition",
        )
    previous = current_review(case)
    if case.status != CaseStatus.REPORTED or previous is None:
        raise IllegalTransition(
            f"A case that is {case.get_status_display().lower()} has no issued report to correct.",
            code="illegal_transition",
        )
    return _review_create(
        actor=actor,
        case=case,
        supersedes=previous,
        diagnosis=diagnosis,
        malignant=malignant,
        management=management,
        follow_up_months=follow_up_months,
        notes=notes,
        agrees_with_ai=agrees_with_ai,
        justification=justification,
        correction_reason=reason,
    )


@transaction.atomic
def case_request_images(*, actor: User, case: Case, reason: str, note: str = "") -> ImageRequest:
    """A dermatologist returns a case awaiting review to its clinician for better images, with a reason."""
    case = _locked_for_review(actor, case)
    if reason not in ImageRequestReason.values:
        raise ValidationError({"reason": "Choose what is needed."})
    note = (note or "").strip()
    if reason == ImageRequestReason.OTHER and not note:
        raise ValidationError({"note": "Say what is needed when the reason is 'Other'."})
    _check_transition(case, CaseStatus.NEEDS_IMAGES)
    next_round = (case.images.aggregate(m=Max("round"))["m"] or 1) + 1
    request = ImageRequest(case=case, requested_by=actor, reason=reason, note=note, round=next_round)
    request.full_clean()
    request.save()
    audit_record(
        actor=actor,
        action=AuditAction.CASE_REQUEST_IMAGES,
        obj=case,
        reason=reason,
        round=next_round,
        request=request.pk,
    )
    _transition(case, CaseStatus.NEEDS_IMAGES, actor=actor, reason=reason)
    from cases.notifications import notify_images_requested

    notify_images_requested(request)
    return request


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
