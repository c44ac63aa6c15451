"""Dermatologist pages: the review queue and the review page."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from cases import permissions, selectors, services
from cases.audit import AuditAction, audit_record
from cases.forms import CorrectionForm, ImageRequestForm, QueueFilterForm, ReviewForm, add_service_errors
from cases.models import CaseStatus
from cases.views.common import case_context, image_rows, live_reviews, paginate, role_required
from cases.vocabulary import RiskBand

# A plain review is answered (signed, or refused with the existing review) in these statuses.
ANSWERABLE = (CaseStatus.AWAITING_REVIEW, CaseStatus.REVIEWED, CaseStatus.REPORTED)


@role_required(*permissions.QUEUE_READERS)
@require_GET
def review_queue(request: HttpRequest) -> HttpResponse:
    """Cases of the organizations the user serves: urgent first, then highest AI risk, then the longest
    waiting (``selectors.review_queue``)."""
    organizations = permissions.organizations_for(request.user)
    filters = QueueFilterForm(request.GET or None, organizations=organizations)
    chosen = filters.cleaned_data if filters.is_valid() else {}
    organization, band, status, priority = (
        chosen.get("organization"),
        chosen.get("band") or None,
        chosen.get("status") or None,
        chosen.get("priority") or None,
    )
    queue = selectors.review_queue(
        request.user, organization=organization, band=band, status=status, priority=priority
    )
    counts = selectors.review_queue_counts(
        user=request.user, organization=organization, band=band, status=status, priority=priority
    )
    context = {
        "filters": filters,
        "page": paginate(request, queue),
        "total": counts.total,
        "band_counts": [(value, label, counts.by_band.get(value, 0)) for value, label in RiskBand.choices],
        "org_counts": counts.by_organization,
        "status_label": CaseStatus(status).label if status else CaseStatus.AWAITING_REVIEW.label,
    }
    return render(request, "cases/review_queue.html", context)


def _review_args(form: ReviewForm) -> dict:
    data = form.cleaned_data
    return {
        "diagnosis": data["diagnosis"],
        "malignant": data["malignant"],
        "management": data["management"],
        "follow_up_months": data["follow_up_months"],
        "notes": data["notes"],
        "agrees_with_ai": form.agrees_with_ai(),
        "justification": data["justification"],
    }


# Service error keys -> the review form's fields.
_REVIEW_FIELD_MAP = {"agrees_with_ai": "ai_assessment"}


def _reviewer_case(request: HttpRequest, case_id: int):
    # The case first: another organization's case is a 404 for everyone, whatever their role.
    case = selectors.case_detail(request.user, case_id)
    if not permissions.can_review(request.user, case):
        raise PermissionDenied("Only a dermatologist serving this organization can review this case.")
    return case


def _review_page(request: HttpRequest, case, form, *, correction_form=None, images_form=None) -> HttpResponse:
    history = [
        {"case": earlier, "images": image_rows(selectors.case_detail(request.user, earlier.pk))}
        for earlier in selectors.lesion_history(request.user, case)[:4]
    ]
    context = case_context(case)
    reported = case.status == CaseStatus.REPORTED
    context.update(
        {
            "form": form,
            "history": history,
            "reviewable": case.status == CaseStatus.AWAITING_REVIEW,
            "correctable": reported,
            "correction_form": correction_form,
            "images_form": images_form or ImageRequestForm(),
            "ai_not_assessed": case.status == CaseStatus.AWAITING_REVIEW and case.risk is None,
            "image_requests": list(case.image_requests.select_related("requested_by")),
        }
    )
    errors = any(f is not None and f.errors for f in (form, correction_form, images_form))
    return render(request, "cases/review_case.html", context, status=400 if errors else 200)


@login_required
@require_http_methods(["GET", "POST"])
def review_case(request: HttpRequest, case_id: int) -> HttpResponse:
    """Images (zoom), metadata, the AI per image and per member, the lesion's earlier cases, and the form."""
    case = _reviewer_case(request, case_id)
    form = ReviewForm(request.POST or None, ai_assessed=case.risk is not None)
    if request.method == "POST":
        if case.status not in ANSWERABLE:
            form.add_error(
                None, f"This case is {case.get_status_display().lower()} and cannot be reviewed now."
            )
        elif form.is_valid():
            try:
                services.review_submit(actor=request.user, case=case, **_review_args(form))
            except ValidationError as exc:  # including ReviewAlreadyExists: a form error, not a 2nd report
                add_service_errors(form, exc, field_map=_REVIEW_FIELD_MAP)
            else:
                messages.success(request, f"Review of case {case.pk} signed. The report is being generated.")
                return redirect("review_queue")
    else:
        audit_record(actor=request.user, action=AuditAction.CASE_VIEW, obj=case, page="review")
    return _review_page(request, case, form)


@login_required
@require_http_methods(["GET", "POST"])
def review_correct(request: HttpRequest, case_id: int) -> HttpResponse:
    """'Correct this report': a new review with a required reason; the report task issues an addendum."""
    case = _reviewer_case(request, case_id)
    current, _ = live_reviews(case)
    initial = {}
    if current is not None:
        initial = {
            "diagnosis": current.diagnosis,
            "malignant": "yes" if current.malignant else "no",
            "management": current.management,
            "follow_up_months": current.follow_up_months,
        }
    form = CorrectionForm(request.POST or None, initial=initial, ai_assessed=case.risk is not None)
    if request.method == "POST" and form.is_valid():
        try:
            services.review_correct(
                actor=request.user, case=case, reason=form.cleaned_data["reason"], **_review_args(form)
            )
        except ValidationError as exc:
            add_service_errors(form, exc, field_map=_REVIEW_FIELD_MAP)
        else:
            messages.success(
                request, f"Correction of case {case.pk} signed. The addendum is being generated."
            )
            return redirect("case_detail", case_id=case.pk)
    return _review_page(request, case, None, correction_form=form)


@login_required
@require_POST
def review_request_images(request: HttpRequest, case_id: int) -> HttpResponse:
    """Return the case to the clinician for better images, with a reason."""
    case = _reviewer_case(request, case_id)
    form = ImageRequestForm(request.POST)
    if form.is_valid():
        try:
            services.case_request_images(
                actor=request.user,
                case=case,
                reason=form.cleaned_data["reason"],
                note=form.cleaned_data["note"],
            )
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, f"Case {case.pk} was returned to the clinician for better images.")
            return redirect("review_queue")
    return _review_page(request, case, ReviewForm(ai_assessed=case.risk is not None), images_form=form)
