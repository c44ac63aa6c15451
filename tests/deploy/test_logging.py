"""Structured logs: JSON lines carrying the request id, from the web request into the Celery worker."""

import json
import logging

import pytest

from cases.models import AuditEvent
from cases.services import case_submit
from inference.heartbeat import ping
from inference.registry import model_activate, model_register
from teleder.context import set_request_context
from teleder.logging import JsonFormatter, RequestIdFilter
from tests.support.images import upload
from tests.support.onnx_models import build_package
from tests.support.workers import WorkerProcess, purge_queues, wait_for


def _json_lines(text: str) -> list[dict]:
    lines = []
    for line in text.splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            continue
    return lines


def test_every_response_carries_a_request_id(client, db):
    supplied = client.get("/healthz", HTTP_X_REQUEST_ID="abc-123")
    generated = client.get("/healthz")
    hostile = client.get("/healthz", HTTP_X_REQUEST_ID="x" * 500)

    assert supplied["X-Request-ID"] == "abc-123"
    assert len(generated["X-Request-ID"]) == 32
    assert len(hostile["X-Request-ID"]) == 32  # an over-long id is replaced, not echoed


def test_json_formatter_writes_one_object_with_the_request_id():
    record = logging.LogRecord("teleder.test", logging.WARNING, __file__, 1, "disk %s", ("full",), None)
    set_request_context(request_id="req-42", ip_address=None)
    try:
        RequestIdFilter().filter(record)
    finally:
        set_request_context(request_id=None, ip_address=None)

    payload = json.loads(JsonFormatter().format(record))

    assert payload["message"] == "disk full"
    assert payload["level"] == "WARNING"
    assert payload["logger"] == "teleder.test"
    assert payload["request_id"] == "req-42"


@pytest.mark.integration
def test_request_id_travels_into_the_worker_logs_and_audit_trail(
    transactional_db, tmp_path, clinician, lesion
):
    version = model_register(build_package(tmp_path / "pkg", name="log-check", version="1.0.0"))
    model_activate(name=version.name, version=version.version)
    purge_queues()
    worker = WorkerProcess(tmp_path / "worker.log", extra_env={"TELEDER_LOG_FORMAT": "json"}).start()
    try:
        set_request_context(request_id="req-e2e-ping", ip_address="192.0.2.7")
        try:
            ping.delay("hello")
        finally:
            set_request_context(request_id=None, ip_address=None)
        line = wait_for(
            lambda: next((x for x in _json_lines(worker.log()) if x.get("message") == "ping hello"), None),
            timeout_s=30,
        )
        assert line["request_id"] == "req-e2e-ping"
        assert line["logger"] == "inference.heartbeat"

        # A submission made during a request is analysed by the worker under the same request id.
        set_request_context(request_id="req-e2e-case", ip_address="192.0.2.7")
        try:
            case = case_submit(actor=clinician, lesion=lesion, images=[upload()], analyse=True).case
        finally:
            set_request_context(request_id=None, ip_address=None)
        wait_for(
            lambda: AuditEvent.objects.filter(object_id=str(case.pk), details__to="awaiting_review").exists()
        )
        worker_events = AuditEvent.objects.filter(object_type="case", object_id=str(case.pk), actor=None)
        assert worker_events.count() >= 2  # claimed, then analysed
        assert set(worker_events.values_list("request_id", flat=True)) == {"req-e2e-case"}
        created = AuditEvent.objects.get(action="case.create", object_id=str(case.pk))
        assert (created.request_id, created.ip_address) == ("req-e2e-case", "192.0.2.7")
        # Lines logged in the worker after the task carry no stale id.
        assert all(
            x["request_id"] in {"-", "req-e2e-ping", "req-e2e-case"} for x in _json_lines(worker.log())
        )
    finally:
        worker.stop()


def test_a_refused_request_is_logged_as_one_line_without_a_traceback(client, clinician, caplog):
    client.force_login(clinician)
    with caplog.at_level(logging.WARNING, logger="django.request"):
        response = client.get("/manage/models/")  # administrators only

    assert response.status_code == 403
    records = [r for r in caplog.records if r.name == "django.request"]
    assert len(records) == 1 and records[0].levelname == "WARNING"
    assert records[0].exc_info is None
    handler = logging.getLogger().handlers[0]
    line = handler.format(records[0])
    assert "Traceback" not in line and "\n" not in line and "/manage/models/" in line
