"""Administrator and ML-engineer pages: model versions, failed cases, the audit trail."""

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from cases import selectors, services
from cases.forms import AuditFilterForm
from cases.models import CaseStatus, User
from cases.views.common import paginate, role_required
from cases.vocabulary import Role


@role_required(Role.ADMIN)
@require_GET
def model_list(request: HttpRequest) -> HttpResponse:
    from inference.selectors import model_versions, previous_model_version

    previous = previous_model_version()
    return render(
        request,
        "cases/model_list.html",
        {"versions": model_versions(), "rollback_target": previous.pk if previous else None},
    )


@role_required(Role.ADMIN)
@require_GET
def model_detail(request: HttpRequest, model_id: int) -> HttpResponse:
    """Metrics, model card and manifest summary of one version."""
    from inference.selectors import model_versions

    version = model_versions().filter(pk=model_id).first()
    if version is None:
        raise Http404("No such model version.")
    return render(
        request, "cases/model_detail.html", {"version": version, "workers": _workers_running(version.pk)}
    )


def _workers_running(version_id: int) -> list[dict] | None:
    """Live workers' heartbeats for this version (providers, CPU fallback); None when Redis cannot answer."""
    from inference import heartbeat

    try:
        alive = heartbeat.workers_alive()
    except Exception:  # noqa: BLE001 - the page still shows the version without the workers
        return None
    return [w for w in alive if (w.get("model") or {}).get("id") == version_id]


@role_required(Role.ADMIN)
@require_POST
def model_activate(request: HttpRequest, model_id: int) -> HttpResponse:
    """Activate a version; activating the previous one is the rollback."""
    from inference.registry import model_activate as activate
    from inference.selectors import model_versions

    version = model_versions().filter(pk=model_id).first()
    if version is None:
        raise Http404("No such model version.")
    try:
        activated = activate(name=version.name, version=version.version, actor=request.user)
    except (ValidationError, ValueError, PermissionDenied) as exc:
        messages.error(request, f"Could not activate {version}: {'; '.join(_messages(exc))}")
    else:
        messages.success(request, f"{activated} is now the active model.")
    return redirect("model_list")


def _messages(exc: Exception) -> list[str]:
    return exc.messages if isinstance(exc, ValidationError) else [str(exc)]


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
