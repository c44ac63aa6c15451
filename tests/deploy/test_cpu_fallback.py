"""A worker asked for CUDA whose model runs on the CPU says so: an ERROR log line, ``cpu_fallback`` in its
heartbeat, a warning on /readyz (still 200: analyses are right, only slower) and on the model page.

The fallback is produced for real: onnxruntime is made to list the CUDA provider (as onnxruntime-gpu does even
when the CUDA libraries cannot load) and the real sessions of a real package then run on the CPU."""

import logging

import onnxruntime
import pytest

from inference import heartbeat
from inference.registry import model_activate, model_register
from tests.support.onnx_models import build_package

GPU_FIRST = ["CUDAExecutionProvider", "CPUExecutionProvider"]


@pytest.fixture
def active_model(transactional_db, tmp_path, settings, no_heartbeats):
    settings.TELEDER_MODEL_DIR = tmp_path / "models"
    heartbeat._model_checks.clear()
    version = model_register(build_package(tmp_path / "pkg", name="fallback-check", version="1.0.0"))
    yield model_activate(name=version.name, version=version.version)
    heartbeat._model_checks.clear()


def test_a_worker_asked_for_cuda_that_runs_on_the_cpu_says_so(
    client, active_model, settings, monkeypatch, caplog, platform_admin
):
    settings.TELEDER_ORT_PROVIDERS = GPU_FIRST
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: list(GPU_FIRST))

    with caplog.at_level(logging.ERROR, logger="inference.heartbeat"):
        payload = heartbeat.beat("gpu@fallback-host", ["inference"])

    model = payload["model"]
    assert model["loaded"] is True
    assert model["providers"] == ["CPUExecutionProvider"]
    assert model["cpu_fallback"] is True and model["requested_providers"] == ["CUDAExecutionProvider"]
    assert any(r.levelno == logging.ERROR and "cpu fallback" in r.getMessage() for r in caplog.records)

    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.json()
    assert ready.json()["warnings"] == [
        "cpu fallback: gpu@fallback-host was asked for CUDAExecutionProvider and runs on CPUExecutionProvider"
    ]

    client.force_login(platform_admin)
    page = client.get(f"/manage/models/{active_model.pk}/").content.decode()
    assert "gpu@fallback-host" in page and "cpu fallback: asked for CUDAExecutionProvider" in page


def test_a_cpu_only_runtime_with_the_default_providers_is_no_fallback(client, active_model, settings):
    # The demo and the CPU image: onnxruntime without CUDA, whatever the provider list asks for.
    settings.TELEDER_ORT_PROVIDERS = GPU_FIRST
    assert "CUDAExecutionProvider" not in onnxruntime.get_available_providers()

    payload = heartbeat.beat("celery@cpu-host", ["inference"])

    assert payload["model"]["loaded"] is True and "cpu_fallback" not in payload["model"]
    ready = client.get("/readyz")
    assert ready.status_code == 200 and "warnings" not in ready.json()


def test_readyz_for_a_web_pod_needs_no_worker(client, db, no_heartbeats):
    # The Kubernetes readiness probe of web pods: a worker outage must not empty the web Service.
    assert client.get("/readyz").status_code == 503
    response = client.get("/readyz?scope=web")
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "cache": "ok"}
