"""Dermatologist pages: the review queue and the review page."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from cases import permissions, selectors, services
from cases.audit import AuditAction, audit_record
from cases.forms import QueueFilterForm, ReviewForm, add_service_errors
from cases.models import CaseStatus
from cases.views.common import case_context, image_rows, paginate, role_required
from cases.vocabulary import RiskBand

REVIEWABLE = (CaseStatus.AWAITING_REVIEW, CaseStatus.REPORTED)


@role_required(*permissions.QUEUE_READERS)
@require_GET
def review_queue(request: HttpRequest) -> HttpResponse:
    """Cases of the organizations the user serves, highest AI risk first, then the longest waiting."""
    organizations = selectors.organizations_for(request.user)
    filters = QueueFilterForm(request.GET or None, organizations=organizations)
    chosen = filters.cleaned_data if filters.is_valid() else {}
    organization, band, status = (
        chosen.get("organization"),
        chosen.get("band") or None,
        chosen.get("status") or None,
    )
    queue = selectors.review_queue(request.user, organization=organization, band=band, status=status)
    counts = selectors.review_queue_counts(
        user=request.user, organization=organization, band=band, status=status
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


@login_required
@require_http_methods(["GET", "POST"])
def review_case(request: HttpRequest, case_id: int) -> HttpResponse:
    """Images (zoom), metadata, the AI per image and per member, the lesion's earlier cases, and the form."""
    # The case first: another organization's case is a 404 for everyone, whatever their role.
    case = selectors.case_detail(request.user, case_id)
    if not permissions.can_review(request.user, case):
        raise PermissionDenied("Only a dermatologist serving this organization can review this case.")
    form = ReviewForm(request.POST or None)
    if request.method == "POST":
        if case.status not in REVIEWABLE:
            form.add_error(
                None, f"This case is {case.get_status_display().lower()} and cannot be reviewed now."
            )
        elif form.is_valid():
            data = form.cleaned_data
            try:
                services.review_submit(
                    actor=request.user,
                    case=case,
                    diagnosis=data["diagnosis"],
                    malignant=data["malignant"],
                    management=data["management"],
                    follow_up_months=data["follow_up_months"],
                    notes=data["notes"],
                    agrees_with_ai=data["ai_assessment"] == ReviewForm.AI_CONFIRM,
                )
            except ValidationError as exc:
                add_service_errors(form, exc)
            else:
                messages.success(request, f"Review of case {case.pk} signed. The report is being generated.")
                return redirect("review_queue")
    else:
        audit_record(actor=request.user, action=AuditAction.CASE_VIEW, obj=case, page="review")
    history = [
        {"case": earlier, "images": image_rows(selectors.case_detail(request.user, earlier.pk))}
        for earlier in selectors.lesion_history(request.user, case)[:4]
    ]
    context = case_context(case)
    context.update(
        {
            "form": form,
            "history": history,
            "reviewable": case.status in REVIEWABLE,
            "is_correction": case.status == CaseStatus.REPORTED,
        }
    )
    return render(request, "cases/review_case.html", context, status=400 if form.errors else 200)
