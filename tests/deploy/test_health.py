"""/healthz, /readyz and the admins' worker list, against the real broker and a real worker process."""

import logging
import socket
import time

import pytest
from botocore.config import Config

from inference.registry import model_activate, model_register
from tests.support.onnx_models import build_package
from tests.support.workers import WorkerProcess, purge_queues, wait_for


@pytest.fixture
def active_model(db, tmp_path):
    version = model_register(build_package(tmp_path / "pkg", name="health-check", version="1.0.0"))
    return model_activate(name=version.name, version=version.version)


def test_healthz_answers_without_touching_anything(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_names_what_is_missing_when_no_model_is_active(client, db, no_heartbeats):
    response = client.get("/readyz")

    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["database"] == "ok"
    assert checks["broker"] == "ok"
    assert checks["storage"] == "ok"
    assert checks["inference_worker"] == "no active model version"


def test_readyz_is_unavailable_without_a_live_inference_worker(client, active_model, no_heartbeats):
    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["checks"]["inference_worker"] == "no live worker on the inference queue"


def test_readyz_reports_an_unreachable_shared_cache_without_a_stack_trace(
    client, db, settings, no_heartbeats
):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:9/1",
            "OPTIONS": {"socket_connect_timeout": 1},
        }
    }
    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["checks"]["cache"] == "error: ConnectionError"
    assert "Traceback" not in response.content.decode()


def test_readyz_reports_unreachable_storage_without_a_stack_trace(client, db, settings, no_heartbeats):
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "teleder.storage.S3Storage",
            "OPTIONS": {
                "bucket_name": "nowhere",
                "endpoint_url": "http://127.0.0.1:9",
                "access_key": "x",
                "secret_key": "x",
                "region_name": "us-east-1",
                "client_config": Config(retries={"max_attempts": 1}, connect_timeout=1),
            },
        },
    }
    # The first probe may be cut off by the deadline while the S3 client is being built (once per process).
    response = wait_for(
        lambda: (r := client.get("/readyz")).json()["checks"]["storage"] != "timeout" and r, timeout_s=10
    )

    assert response.status_code == 503
    assert response.json()["checks"]["storage"] == "unreachable"
    assert "Traceback" not in response.content.decode()


@pytest.fixture
def silent_server():
    """A TCP port that accepts connections and never answers: a hung broker or cache."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"
    server.close()


def test_readyz_answers_fast_when_the_broker_and_the_cache_hang(client, db, settings, silent_server, caplog):
    settings.CELERY_BROKER_URL = silent_server
    settings.REDIS_URL = ""
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": silent_server}
    }
    started = time.monotonic()
    with caplog.at_level(logging.INFO):
        response = client.get("/readyz")
    elapsed = time.monotonic() - started

    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["database"] == "ok"
    assert checks["broker"] in ("error: TimeoutError", "timeout")
    assert checks["cache"] == "timeout"  # no socket timeout configured: cut off by the deadline
    assert checks["inference_worker"].startswith("heartbeats unavailable")
    # The deadline is 0.4 s; the old check waited for the broker's 2 s timeouts and more.
    assert elapsed < 1.5, elapsed
    # Not ready is an answer, not a server error: one WARNING line, nothing at ERROR.
    readyz = [r for r in caplog.records if "readyz" in r.getMessage() or "/readyz" in r.getMessage()]
    assert [r.levelname for r in readyz] == ["WARNING"], [(r.levelname, r.getMessage()) for r in readyz]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.integration
def test_readyz_turns_ready_once_a_worker_has_loaded_the_active_model(
    client, transactional_db, tmp_path, no_heartbeats, platform_admin, clinician
):
    version = model_register(build_package(tmp_path / "pkg", name="health-check", version="2.0.0"))
    model_activate(name=version.name, version=version.version)
    assert client.get("/readyz").status_code == 503

    purge_queues()
    worker = WorkerProcess(tmp_path / "worker.log", queues="inference").start()
    try:
        response = wait_for(lambda: (r := client.get("/readyz")).status_code == 200 and r, timeout_s=60)
        assert response.json() == {
            "status": "ok",
            "checks": {
                "database": "ok",
                "broker": "ok",
                "cache": "ok",
                "storage": "ok",
                "inference_worker": "ok",
            },
        }

        client.force_login(platform_admin)
        workers = client.get("/healthz/workers").json()["workers"]
        assert len(workers) == 1
        assert workers[0]["queues"] == ["inference"]
        assert workers[0]["model"]["name"] == "health-check"
        assert workers[0]["model"]["version"] == "2.0.0"
        assert workers[0]["model"]["loaded"] is True
        assert "CPUExecutionProvider" in workers[0]["model"]["providers"]
    finally:
        worker.stop()

    # A worker that shuts down cleanly leaves the list at once.
    assert client.get("/healthz/workers").json()["workers"] == []
    assert (
        client.get("/readyz").json()["checks"]["inference_worker"] == "no live worker on the inference queue"
    )


def test_worker_list_is_for_admins_only(client, db, clinician, dermatologist):
    assert client.get("/healthz/workers").status_code == 401
    for user in (clinician, dermatologist):
        client.force_login(user)
        assert client.get("/healthz/workers").status_code == 403
