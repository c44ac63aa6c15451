"""Liveness (/healthz), readiness (/readyz) and the admins' view of the workers (/healthz/workers).

/healthz says only that this process answers (for a container's restart policy). /readyz says whether the
platform can do its work: database, broker, cache and storage reachable, and at least one live worker on the
``inference`` queue that has loaded the active model. Each failing check is named; no exception text leaks.
"""

from collections.abc import Callable

from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views.decorators.cache import never_cache

INFERENCE_QUEUE = "inference"


def _database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return "ok"


def _broker() -> str:
    from teleder.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0.2, timeout=2)
    return "ok"


def _cache() -> str:
    # With CACHE_URL the rate limits live in Redis: a web process that cannot reach it cannot serve the API.
    from django.core.cache import cache

    cache.set("readyz", "1", timeout=10)
    return "ok" if cache.get("readyz") == "1" else "not storing values"


def _storage() -> str:
    from teleder.storage import storage_reachable

    return "ok" if storage_reachable() else "unreachable"


def _inference_worker() -> str:
    from inference import heartbeat
    from inference.selectors import active_model_version

    version = active_model_version()
    if version is None:
        return "no active model version"
    workers = [w for w in heartbeat.workers_alive() if INFERENCE_QUEUE in w.get("queues", [])]
    if not workers:
        return "no live worker on the inference queue"
    if any((w.get("model") or {}).get("id") == version.pk and w["model"].get("loaded") for w in workers):
        return "ok"
    return f"no worker has loaded {version.name} {version.version}"


CHECKS: dict[str, Callable[[], str]] = {
    "database": _database,
    "broker": _broker,
    "cache": _cache,
    "storage": _storage,
    "inference_worker": _inference_worker,
}


WEB_CHECKS = ("database", "cache")


@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@never_cache
def readyz(request: HttpRequest) -> JsonResponse:
    checks = {}
    # ?scope=web: only what one web process needs to serve pages (a Kubernetes readiness probe), so that a
    # worker outage does not take every web pod out of its Service as well.
    names = WEB_CHECKS if request.GET.get("scope") == "web" else CHECKS
    for name, check in CHECKS.items():
        if name not in names:
            continue
        try:
            checks[name] = check()
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            checks[name] = f"error: {exc.__class__.__name__}"
    ready = all(value == "ok" for value in checks.values())
    body: dict = {"status": "ok" if ready else "unavailable", "checks": checks}
    # Degraded but working (still 200): e.g. a GPU worker whose model runs on the CPU (inference/heartbeat.py).
    if warnings := _warnings():
        body["warnings"] = warnings
    return JsonResponse(body, status=200 if ready else 503)


def _warnings() -> list[str]:
    from inference import heartbeat

    try:
        return heartbeat.cpu_fallbacks(heartbeat.workers_alive())
    except Exception:  # noqa: BLE001 - the inference_worker check already reports Redis trouble
        return []


@never_cache
def workers(request: HttpRequest) -> JsonResponse:
    """Live workers and their heartbeats, for platform admins only."""
    from inference import heartbeat

    user = request.user
    if not user.is_authenticated:
        return JsonResponse({"error": {"code": "not_authenticated", "message": "Log in first."}}, status=401)
    if not user.is_platform_admin:
        return JsonResponse({"error": {"code": "forbidden", "message": "Administrators only."}}, status=403)
    try:
        alive = heartbeat.workers_alive()
    except Exception as exc:  # noqa: BLE001 - Redis down is an answer, not a crash
        return JsonResponse(
            {"workers": [], "error": f"heartbeats unavailable: {exc.__class__.__name__}"}, status=503
        )
    return JsonResponse({"workers": alive})


urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("healthz/workers", workers, name="health_workers"),
]
