"""Administrator pages: failed cases and the audit trail (model versions are the inference app's pages)."""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from cases import selectors, services
from cases.forms import AuditFilterForm
from cases.models import CaseStatus, User
from cases.views.common import paginate, role_required
from cases.vocabulary import Role


@role_required(Role.ADMIN)
@require_GET
def failed_cases(request: HttpRequest) -> HttpResponse:
    cases = selectors.cases_visible_to(request.user).filter(status=CaseStatus.FAILED).order_by("-updated_at")
    return render(request, "cases/failed_cases.html", {"page": paginate(request, cases)})


@role_required(Role.ADMIN)
@require_POST
def case_retry(request: HttpRequest, case_id: int) -> HttpResponse:
    case = selectors.case_get(request.user, case_id)
    try:
        services.case_retry(actor=request.user, case=case)
    except ValidationError as exc:
        messages.error(request, f"Case {case.pk}: {'; '.join(exc.messages)}")
    else:
        messages.success(request, f"Case {case.pk} sent back for analysis.")
    return redirect("failed_cases")


@role_required(Role.ADMIN)
@require_GET
def audit_trail(request: HttpRequest) -> HttpResponse:
    """The audit trail, filtered by user and/or object."""
    users = User.objects.order_by("username")
    filters = AuditFilterForm(request.GET or None, users=users)
    chosen = filters.cleaned_data if filters.is_valid() else {}
    events = selectors.audit_events(
        request.user,
        actor=chosen.get("actor"),
        object_type=(chosen.get("object_type") or "").strip(),
        object_id=(chosen.get("object_id") or "").strip(),
    )
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "cases/audit_trail.html",
        {"filters": filters, "page": paginate(request, events, per_page=50), "query": query.urlencode()},
    )
