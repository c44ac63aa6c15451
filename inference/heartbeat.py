"""Worker heartbeats: each Celery worker writes a short-lived key in Redis saying who it is, which queues it
consumes and whether it can load the active model. ``/readyz`` and the admins' worker list read them.

A background thread in the worker's main process refreshes the key every ``TELEDER_HEARTBEAT_INTERVAL_S``;
the key expires after three intervals, so a killed worker disappears on its own.
"""

import json
import logging
import os
import socket
import threading
import time
from typing import Any

from celery import shared_task
from django.conf import settings

logger = logging.getLogger(__name__)

KEY_PREFIX = "teleder:worker:"
_model_checks: dict[tuple[int, str], dict[str, Any]] = {}
_stop = threading.Event()


def interval_s() -> float:
    return float(getattr(settings, "TELEDER_HEARTBEAT_INTERVAL_S", 10.0))


def redis_client(timeout_s: float = 2.0):
    """A Redis client for heartbeats: REDIS_URL, else the broker when it is Redis (embedded or not)."""
    import redis

    from inference.broker import redis_options

    url = settings.REDIS_URL or settings.CELERY_BROKER_URL
    if url.startswith("redis+socket://"):
        return redis.Redis(unix_socket_path=url.removeprefix("redis+socket://"), **redis_options(timeout_s))
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise RuntimeError("Worker heartbeats need Redis: set REDIS_URL when the broker is not Redis.")
    return redis.Redis.from_url(url, **redis_options(timeout_s))


def _check_model() -> dict[str, Any] | None:
    """Load the active model version into this process's ensemble cache (so the first case does not pay for
    it) and report whether that worked; checked once per version."""
    from django.db import close_old_connections

    from inference.registry import ensemble_for
    from inference.selectors import active_model_version

    close_old_connections()
    version = active_model_version()
    if version is None:
        return None
    key = (version.pk, version.sha256)
    if key not in _model_checks:
        result: dict[str, Any] = {"id": version.pk, "name": version.name, "version": version.version}
        try:
            result["providers"] = list(ensemble_for(version).providers)
            result["loaded"] = True
            result.update(_cpu_fallback(result["providers"]))
        except Exception as exc:  # noqa: BLE001 - a broken package is reported, not fatal to the heartbeat
            result["loaded"] = False
            result["error"] = f"{exc.__class__.__name__}: {str(exc)[:300]}"
        if not result["loaded"]:
            return result  # tried again on the next beat: the files may be fixed meanwhile
        _model_checks.clear()
        _model_checks[key] = result
    return _model_checks[key]


def _cpu_fallback(providers: list[str]) -> dict[str, Any]:
    """A worker asked for a GPU provider (``TELEDER_ORT_PROVIDERS``) that its onnxruntime build has, whose
    sessions run on the CPU anyway (CUDA or cuDNN libraries that do not load, no GPU given to the container),
    is slow, not broken: say so loudly (an ERROR log line and ``cpu_fallback`` in the heartbeat, shown by
    /readyz and the model page), never silently. A CPU-only onnxruntime with the default provider list (the
    demo, the CPU image) is not a fallback; the GPU image's build refuses a CPU-only onnxruntime."""
    import onnxruntime

    available = set(onnxruntime.get_available_providers())
    requested = [p for p in settings.TELEDER_ORT_PROVIDERS if p != "CPUExecutionProvider" and p in available]
    if not requested or any(p in providers for p in requested):
        return {}
    logger.error(
        "cpu fallback: %s requested but the model's sessions run on %s (check onnxruntime-gpu and the CUDA "
        "libraries: docker/check_ort_cuda.sh)",
        ", ".join(requested),
        ", ".join(providers) or "nothing",
    )
    return {"cpu_fallback": True, "requested_providers": requested}


def cpu_fallbacks(workers: list[dict[str, Any]]) -> list[str]:
    """One line per live worker that was asked for a GPU and runs its model on the CPU."""
    return [
        f"cpu fallback: {w.get('hostname', '?')} was asked for {', '.join(w['model'].get('requested_providers', []))}"
        f" and runs on {', '.join(w['model'].get('providers', [])) or 'nothing'}"
        for w in workers
        if (w.get("model") or {}).get("cpu_fallback")
    ]


def beat(hostname: str, queues: list[str]) -> dict[str, Any]:
    """Write this worker's heartbeat now and return it."""
    try:
        model = _check_model()
    except Exception as exc:  # noqa: BLE001 - a database hiccup must not stop the heartbeat
        model = {"loaded": False, "error": f"{exc.__class__.__name__}: {str(exc)[:200]}"}
    payload = {
        "hostname": hostname,
        "pid": os.getpid(),
        "machine": socket.gethostname(),
        "queues": sorted(queues),
        "model": model,
        "at": time.time(),
    }
    redis_client().set(KEY_PREFIX + hostname, json.dumps(payload), ex=max(1, int(3 * interval_s())))
    return payload


def _loop(hostname: str, queues: list[str]) -> None:
    while not _stop.is_set():
        try:
            beat(hostname, queues)
        except Exception:  # noqa: BLE001 - keep beating once Redis is back
            logger.warning("worker heartbeat failed", exc_info=True)
        _stop.wait(interval_s())


def start(hostname: str, queues: list[str]) -> threading.Thread:
    """Start the heartbeat thread (called on Celery's ``worker_ready``)."""
    _stop.clear()
    thread = threading.Thread(target=_loop, args=(hostname, queues), name="teleder-heartbeat", daemon=True)
    thread.start()
    return thread


def stop(hostname: str) -> None:
    """Stop beating and remove the key (called on ``worker_shutdown``), so the worker leaves the list at once."""
    _stop.set()
    try:
        redis_client().delete(KEY_PREFIX + hostname)
    except Exception:  # noqa: BLE001 - best effort on the way out
        logger.warning("could not remove the worker heartbeat", exc_info=True)


def workers_alive(*, timeout_s: float = 2.0) -> list[dict[str, Any]]:
    """Heartbeats of the workers seen in the last three intervals, by hostname."""
    client = redis_client(timeout_s)
    workers = []
    for key in sorted(client.scan_iter(match=KEY_PREFIX + "*", count=100)):
        raw = client.get(key)
        if raw:
            payload = json.loads(raw)
            payload["age_s"] = round(max(0.0, time.time() - payload.get("at", 0)), 1)
            workers.append(payload)
    return workers


@shared_task(name="teleder.ping", ignore_result=True, soft_time_limit=10, time_limit=20)
def ping(label: str = "") -> str:
    """A no-op round trip through the broker, for operators and for the request-id log test."""
    logger.info("ping %s", label)
    return label
