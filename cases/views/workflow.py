"""Workflow pages: drafts and resubmission (clinicians), the patient typeahead, the notification outbox
(administrators) and the e-mail opt-out (everyone). Thin: services write, selectors read."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from cases import selectors, services
from cases.models import Notification, NotificationStatus
from cases.views.common import paginate, role_required
from cases.vocabulary import Role

SUBMITTERS = (Role.CLINICIAN, Role.ADMIN)


def _error_text(exc: ValidationError) -> str:
    return " ".join(exc.messages)


@login_required
@require_POST
def case_add_images(request: HttpRequest, case_id: int) -> HttpResponse:
    """Add images to a draft or to a case returned for better images (the submitter only)."""
    # The case first: another organization's case is a 404 whatever the role; the service checks the rest.
    case = selectors.case_get(request.user, case_id)
    uploads = request.FILES.getlist("images")
    if not uploads:
        messages.error(request, "Choose at least one image to add.")
        return redirect("case_detail", case_id=case.pk)
    try:
        stored = services.case_add_images(actor=request.user, case=case, images=uploads)
    except ValidationError as exc:
        messages.error(request, _error_text(exc))
    else:
        messages.success(request, f"{len(stored)} image(s) added. Submit the case when it is complete.")
    return redirect("case_detail", case_id=case.pk)


@login_required
@require_POST
def case_submit(request: HttpRequest, case_id: int) -> HttpResponse:
    """Submit a draft, or resubmit a case with the better images the dermatologist asked for."""
    case = selectors.case_get(request.user, case_id)
    try:
        services.case_submit_for_analysis(actor=request.user, case=case)
    except ValidationError as exc:
        messages.error(request, _error_text(exc))
    else:
        messages.success(request, f"Case {case.pk} submitted. The AI analysis starts now.")
    return redirect("case_detail", case_id=case.pk)


@role_required(*SUBMITTERS)
@require_GET
def patient_search(request: HttpRequest) -> JsonResponse:
    """The new-case form's typeahead: up to 20 patients of the user's organizations by reference."""
    query = (request.GET.get("q") or "").strip()[:64]
    patients = (
        selectors.patients_search(request.user, query).order_by("reference", "pk")[:20] if query else []
    )
    return JsonResponse(
        {
            "results": [
                {"id": p.pk, "reference": p.reference, "year_of_birth": p.year_of_birth, "sex": p.sex}
                for p in patients
            ]
        }
    )


@login_required
@require_GET
def notification_outbox(request: HttpRequest) -> HttpResponse:
    """What was sent, skipped (opted out) and failed, for platform administrators."""
    if not request.user.is_platform_admin:
        raise PermissionDenied("Only administrators can see the notification outbox.")
    status = request.GET.get("status", "")
    rows = Notification.objects.select_related("recipient").order_by("-created_at", "-pk")
    if status in NotificationStatus.values:
        rows = rows.filter(status=status)
    return render(
        request,
        "cases/notification_outbox.html",
        {
            "page": paginate(request, rows),
            "status": status,
            "statuses": NotificationStatus.choices,
            "query": f"status={status}" if status in NotificationStatus.values else "",
        },
    )


@login_required
@require_POST
def notification_preferences(request: HttpRequest) -> HttpResponse:
    """Turn the user's e-mail notifications on or off."""
    enabled = request.POST.get("email_notifications") == "on"
    services.user_set_notifications(actor=request.user, enabled=enabled)
    messages.success(request, f"E-mail notifications turned {'on' if enabled else 'off'}.")
    return redirect(request.POST.get("next") if request.POST.get("next", "").startswith("/") else "home")
