"""Administrator pages of the AI service: model versions (metrics, model card), activate and roll back."""

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from cases.views.common import role_required
from cases.vocabulary import Role
from inference.registry import model_activate as activate
from inference.selectors import model_versions, previous_model_version


@role_required(Role.ADMIN)
@require_GET
def model_list(request: HttpRequest) -> HttpResponse:
    previous = previous_model_version()
    return render(
        request,
        "inference/model_list.html",
        {"versions": model_versions(), "rollback_target": previous.pk if previous else None},
    )


@role_required(Role.ADMIN)
@require_GET
def model_detail(request: HttpRequest, model_id: int) -> HttpResponse:
    """Metrics, model card and manifest summary of one version."""
    version = model_versions().filter(pk=model_id).first()
    if version is None:
        raise Http404("No such model version.")
    return render(
        request, "inference/model_detail.html", {"version": version, "workers": _workers_running(version.pk)}
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
