"""Liveness (/healthz), readiness (/readyz) and the admins' view of the workers (/healthz/workers).

/healthz says only that this process answers (for a container's restart policy). /readyz says whether the
platform can do its work: database, broker, cache and storage reachable, and at least one live worker on the
``inference`` queue that has loaded the active model. Each failing check is named; no exception text leaks.
"""

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from dataclasses import dataclass

from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views.decorators.cache import never_cache

INFERENCE_QUEUE = "inference"
# /readyz answers within this many seconds whatever is down: each check runs in its own thread with short
# socket timeouts, and a check still running at the deadline is reported as "timeout".
READYZ_DEADLINE_S = 0.4
CHECK_TIMEOUT_S = 0.3

logger = logging.getLogger(__name__)


def _database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return "ok"


def _broker() -> str:
    from inference.broker import broker_redis

    client = broker_redis(timeout_s=CHECK_TIMEOUT_S)
    if client is not None:
        return "ok" if client.ping() else "not answering"
    from teleder.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0.1, timeout=CHECK_TIMEOUT_S)
    return "ok"


def _cache() -> str:
    # With CACHE_URL the rate limits live in Redis: a web process that cannot reach it cannot serve the API.
    from django.core.cache import cache

    cache.set("readyz", "1", timeout=10)
    return "ok" if cache.get("readyz") == "1" else "not storing values"


def _storage() -> str:
    from teleder.storage import storage_reachable

    return "ok" if storage_reachable() else "unreachable"


def _inference_worker(heartbeats: list[dict]) -> str:
    from inference.selectors import active_model_version

    version = active_model_version()
    if version is None:
        return "no active model version"
    workers = [w for w in heartbeats if INFERENCE_QUEUE in w.get("queues", [])]
    if not workers:
        return "no live worker on the inference queue"
    if any((w.get("model") or {}).get("id") == version.pk and w["model"].get("loaded") for w in workers):
        return "ok"
    return f"no worker has loaded {version.name} {version.version}"


def _heartbeats() -> list[dict]:
    from inference import heartbeat

    return heartbeat.workers_alive(timeout_s=CHECK_TIMEOUT_S)


# Checks over the network, run in parallel threads under the deadline. The database checks run in the
# request's own thread (its connection and transaction).
CHECKS: dict[str, Callable[[], str]] = {
    "broker": _broker,
    "cache": _cache,
    "storage": _storage,
}


def _run(check: Callable[[], object]) -> object:
    try:
        return check()
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        return f"error: {exc.__class__.__name__}"


# Long-lived threads: clients that keep a connection per thread (S3, Redis pools) are built once, not per probe.
_executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="readyz")


@dataclass
class Readiness:
    checks: dict[str, str]
    warnings: list[str]


def run_checks(deadline_s: float = READYZ_DEADLINE_S, *, web_only: bool = False) -> Readiness:
    """Every check (``web_only``: what one web process needs to serve pages); the network ones at once in
    worker threads. One not done by the deadline reads "timeout"."""
    end = time.monotonic() + deadline_s
    background = {name: check for name, check in CHECKS.items() if not web_only or name in WEB_CHECKS}
    if not web_only:
        background["heartbeats"] = _heartbeats
    futures = {name: _executor.submit(_run, check) for name, check in background.items()}
    results: dict[str, object] = {}
    checks: dict[str, str] = {}
    try:
        checks["database"] = _database()
    except Exception as exc:  # noqa: BLE001
        checks["database"] = f"error: {exc.__class__.__name__}"
    for name, future in futures.items():
        try:
            results[name] = future.result(timeout=max(0.0, end - time.monotonic()))
        except FuturesTimeout:
            results[name] = "timeout"
    for name in background:
        if name != "heartbeats":
            checks[name] = str(results.get(name, "timeout"))
    if web_only:
        return Readiness(checks, [])
    heartbeats = results.get("heartbeats", "timeout")
    if checks["database"] != "ok":
        checks["inference_worker"] = "unknown: the database is unavailable"
    elif isinstance(heartbeats, list):
        try:
            checks["inference_worker"] = _inference_worker(heartbeats)
        except Exception as exc:  # noqa: BLE001
            checks["inference_worker"] = f"error: {exc.__class__.__name__}"
    else:
        checks["inference_worker"] = f"heartbeats unavailable ({heartbeats})"
    order = ("database", "broker", "cache", "storage", "inference_worker")
    # Degraded but working (still ready): e.g. a GPU worker whose model runs on the CPU (inference/heartbeat.py).
    from inference.heartbeat import cpu_fallbacks

    warnings = cpu_fallbacks(heartbeats) if isinstance(heartbeats, list) else []
    return Readiness({name: checks[name] for name in order if name in checks} | checks, warnings)


# ?scope=web: only what one web process needs to serve pages (a Kubernetes readiness probe), so that a worker
# outage does not take every web pod out of its Service as well.
WEB_CHECKS = ("database", "cache")


@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@never_cache
def readyz(request: HttpRequest) -> JsonResponse:
    readiness = run_checks(web_only=request.GET.get("scope") == "web")
    checks = readiness.checks
    ready = all(value == "ok" for value in checks.values())
    body: dict = {"status": "ok" if ready else "unavailable", "checks": checks}
    if readiness.warnings:
        body["warnings"] = readiness.warnings
    response = JsonResponse(body, status=200 if ready else 503)
    if not ready:
        # An expected answer while a dependency is down, not a server error: one WARNING line, and Django's
        # request logger (which logs every 5xx at ERROR) is told it has been logged.
        failing = ", ".join(f"{name}={value}" for name, value in checks.items() if value != "ok")
        logger.warning("readyz: not ready (%s)", failing)
        response._has_been_logged = True
    return response


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
