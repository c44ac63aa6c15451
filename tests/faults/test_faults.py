"""Faults injected into a running platform (real broker, real worker processes, real database).

Each test counts cases: every case submitted is analysed exactly once into one prediction per image,
none lost and none duplicated, and recovery does not wait for TELEDER_STUCK_AFTER_S (600 s by default):
every accepted case is analysed within 60 s of the worker or broker coming back. Fault 1 (20 concurrent
retries with one Idempotency-Key over HTTP), 3 (a killed worker, a broker that lost its messages), 4 (a
broker outage: /readyz answers fast, submits are stored and caught up) are here; fault 5 (unwritable media)
is test_storage_fault.py; fault 2 (the demo's supervisor, the broker's append-only file) is
tests/deploy/test_supervisor.py. Broken-model faults live in tests/inference.
"""

import contextlib
import json
import shutil
import subprocess
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
from django.conf import settings
from django.db import connection

from cases import services
from cases.models import Case, CaseStatus, LesionImage, Prediction
from inference.registry import model_activate, model_register
from teleder import embedded_redis
from tests.cases.api import contract
from tests.cases.api.conftest import login
from tests.support.images import image_bytes, upload
from tests.support.onnx_models import build_package
from tests.support.workers import WorkerProcess, purge_queues, wait_for

pytestmark = pytest.mark.integration
RECOVERY_S = 60  # every accepted case analysed within this long after the worker or broker is back
# Fast heartbeats (a killed worker is noticed after 3 s) and sweeps every 2 s; the stuck timeout stays 600 s.
FAST = {"TELEDER_HEARTBEAT_INTERVAL_S": "1", "TELEDER_SWEEP_INTERVAL_S": "2"}


@pytest.fixture
def model(transactional_db, tmp_path, settings):
    settings.TELEDER_MODEL_DIR = tmp_path / "models"
    version = model_register(build_package(tmp_path / "package"))
    return model_activate(name=version.name, version=version.version)


def submit(clinician, lesion, n_images: int = 1) -> Case:
    images = [upload(f"img{i}.jpg", seed=100 + i) for i in range(n_images)]
    return services.case_submit(actor=clinician, lesion=lesion, images=images).case


def assert_each_case_analysed_once(cases: list[Case], model, timeout_s: float = 120) -> None:
    ids = [c.pk for c in cases]
    wait_for(
        lambda: Case.objects.filter(pk__in=ids, status=CaseStatus.AWAITING_REVIEW).count() == len(ids),
        timeout_s=timeout_s,
    )
    images = LesionImage.objects.filter(case_id__in=ids).count()
    assert Prediction.objects.filter(image__case_id__in=ids, model_version=model).count() == images
    assert Case.objects.filter(pk__in=ids).count() == len(ids)


class Broker:
    """Stop and start the broker this test run uses: the embedded Redis, or the local Redis server."""

    def __init__(self):
        self.embedded = settings.EMBEDDED_REDIS

    def client(self) -> redis.Redis:
        if self.embedded:
            return redis.Redis(unix_socket_path=str(settings.EMBEDDED_REDIS_SOCKET), socket_connect_timeout=1)
        return redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_connect_timeout=1)

    def is_up(self) -> bool:
        try:
            return bool(self.client().ping())
        except (redis.RedisError, OSError):
            return False

    def stop(self) -> None:
        # The server drops the connection as it exits.
        with contextlib.suppress(redis.ConnectionError, redis.ResponseError):
            self.client().shutdown(nosave=True)
        wait_for(lambda: not self.is_up(), timeout_s=10)

    def restart_losing_messages(self) -> None:
        """A broker restart that keeps nothing (no persistence): every queued message is gone."""
        self.stop()
        if self.embedded:
            for path in settings.EMBEDDED_REDIS_SOCKET.parent.glob(embedded_redis.AOF_NAME + "*"):
                path.unlink()
        self.start()

    def start(self) -> None:
        if self.embedded:
            # The session's `broker` fixture shuts down whatever answers on the socket at the end.
            embedded_redis.start(settings.EMBEDDED_REDIS_SOCKET)
        else:
            # The documented command (README / scripts/ci_services.sh).
            subprocess.run(
                [
                    "redis-server",
                    "--daemonize",
                    "yes",
                    "--bind",
                    "127.0.0.1",
                    "--port",
                    "6379",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ],
                check=True,
            )
        wait_for(self.is_up, timeout_s=10)


def test_submissions_during_a_broker_outage_are_stored_and_analysed_when_it_returns(
    model, clinician, lesion, tmp_path, client
):
    if not settings.EMBEDDED_REDIS and shutil.which("redis-server") is None:
        pytest.skip("redis-server is needed to restart the local Redis")
    broker = Broker()
    purge_queues()
    # The worker runs the sweeper every 2 s (Celery beat in the worker); the stuck timeout stays 600 s.
    worker = WorkerProcess(
        tmp_path / "worker.log", extra_env=FAST, extra_args=["-B", "-s", str(tmp_path / "beat-schedule")]
    ).start()
    try:
        before = [submit(clinician, lesion, 2) for _ in range(2)]
        assert_each_case_analysed_once(before, model)

        client.get("/healthz")  # the first request imports every view: not what is measured below
        broker.stop()
        during = [submit(clinician, lesion, 1) for _ in range(4)]  # the clinician's submit still succeeds
        stored = Case.objects.filter(pk__in=[c.pk for c in during])
        assert stored.count() == 4
        assert set(stored.values_list("status", flat=True)) == {CaseStatus.SUBMITTED}
        assert LesionImage.objects.filter(case__in=stored).count() == 4
        # /readyz says so at once, not after the broker's connect timeouts.
        started = time.monotonic()
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["broker"] != "ok"
        assert time.monotonic() - started < 1.5  # a 0.4 s deadline; it took 3.4-4.2 s before

        broker.start()
        back = time.monotonic()
        assert_each_case_analysed_once(before + during, model, timeout_s=RECOVERY_S)
        assert time.monotonic() - back < RECOVERY_S
    finally:
        if not broker.is_up():
            broker.start()
        worker.stop()
    lost = Case.objects.exclude(status=CaseStatus.AWAITING_REVIEW).filter(
        pk__in=[c.pk for c in before + during]
    )
    assert not lost.exists()


def test_a_worker_killed_mid_analysis_is_caught_up_without_the_stuck_timeout(
    model, clinician, lesion, tmp_path
):
    purge_queues()
    slow = WorkerProcess(
        tmp_path / "slow.log", extra_env={**FAST, "TELEDER_TEST_ANALYSIS_DELAY_S": "60"}
    ).start()
    try:
        interrupted = submit(clinician, lesion, 2)
        wait_for(lambda: Case.objects.get(pk=interrupted.pk).status == CaseStatus.ANALYSING, timeout_s=60)
        slow.kill()  # SIGKILL mid-analysis: its message stays unacknowledged for the visibility timeout (1 h)
    finally:
        slow.stop()
    waiting = [submit(clinician, lesion, 1) for _ in range(2)]  # queued while no worker runs
    fresh = WorkerProcess(
        tmp_path / "fresh.log", extra_env=FAST, extra_args=["-B", "-s", str(tmp_path / "beat-schedule")]
    ).start()
    back = time.monotonic()
    try:
        assert_each_case_analysed_once([interrupted, *waiting], model, timeout_s=RECOVERY_S)
    finally:
        fresh.stop()
    assert time.monotonic() - back < RECOVERY_S
    interrupted.refresh_from_db()
    assert interrupted.analysis_attempts == 2  # the dead worker's claim, then exactly one more


def test_a_broker_restart_that_lost_the_queue_is_caught_up_without_the_stuck_timeout(
    model, clinician, lesion, tmp_path
):
    if not settings.EMBEDDED_REDIS and shutil.which("redis-server") is None:
        pytest.skip("redis-server is needed to restart the local Redis")
    broker = Broker()
    purge_queues()
    queued = [submit(clinician, lesion, 1) for _ in range(3)]  # published, but no worker runs yet
    assert all(Case.objects.get(pk=c.pk).enqueued_at is not None for c in queued)
    time.sleep(1.1)  # the broker's uptime after the restart is then shorter than the cases' age
    try:
        broker.restart_losing_messages()
    finally:
        if not broker.is_up():
            broker.start()
    worker = WorkerProcess(
        tmp_path / "worker.log", extra_env=FAST, extra_args=["-B", "-s", str(tmp_path / "beat-schedule")]
    ).start()
    back = time.monotonic()
    try:
        assert_each_case_analysed_once(queued, model, timeout_s=RECOVERY_S)
        time.sleep(4)  # two more sweeps: nothing is published a second time
        assert worker.log().count("sweeper: re-enqueued analyses") == 1, worker.log()[-3000:]
    finally:
        worker.stop()
    assert time.monotonic() - back < RECOVERY_S + 10
    assert set(
        Case.objects.filter(pk__in=[c.pk for c in queued]).values_list("analysis_attempts", flat=True)
    ) == {1}


class _Answer:
    """A requests response seen through the Django response interface that tests/cases/api/contract.py reads."""

    def __init__(self, response):
        self.status_code = response.status_code
        self.content = response.content
        self._headers = response.headers

    def get(self, name: str, default: str = "") -> str:
        return self._headers.get(name, default)

    def __getitem__(self, name: str) -> str:
        return self._headers[name]


def test_twenty_concurrent_retries_with_one_key_give_one_case_and_only_documented_answers(
    model, live_server, clinician, lesion, tmp_path
):
    import requests

    purge_queues()
    worker = WorkerProcess(tmp_path / "worker.log", extra_env=FAST).start()
    from rest_framework.test import APIClient

    token = login(APIClient(), clinician.username)["access"]
    key, n = str(uuid.uuid4()), 20
    image = image_bytes(seed=7)
    barrier = threading.Barrier(n)

    def retry(_: int) -> _Answer:
        barrier.wait()
        response = requests.post(
            f"{live_server.url}/api/v1/cases/",
            headers={"Authorization": f"Bearer {token}", "Idempotency-Key": key},
            data={"lesion": lesion.pk},
            files=[("images", ("lesion.jpg", image, "image/jpeg"))],
            timeout=60,
        )
        return _Answer(response)

    try:
        with ThreadPoolExecutor(n) as pool:
            answers = list(pool.map(retry, range(n)))
        statuses = sorted(a.status_code for a in answers)
        assert statuses == [200] * (n - 1) + [201], [a.content[:300] for a in answers]
        undocumented = [v for a in answers for v in contract.check("POST", "/api/v1/cases/", a)]
        assert undocumented == []
        assert {json.loads(a.content)["id"] for a in answers} == {Case.objects.get().pk}
        assert all(a.get("Idempotent-Replayed") == "true" for a in answers if a.status_code == 200)
        assert_each_case_analysed_once(list(Case.objects.all()), model, timeout_s=RECOVERY_S)
    finally:
        worker.stop()
    assert Case.objects.count() == 1 and LesionImage.objects.count() == 1


def _postgres_cluster() -> list[str] | None:
    if connection.vendor != "postgresql" or shutil.which("pg_ctlcluster") is None:
        return None
    versions = subprocess.run(["ls", "/etc/postgresql"], capture_output=True, text=True).stdout.split()
    return ["pg_ctlcluster", "--skip-systemctl-redirect", versions[0], "main"] if versions else None


def test_a_database_restart_during_the_run_loses_no_case(model, clinician, lesion, tmp_path):
    cluster = _postgres_cluster()
    if cluster is None:
        pytest.skip("needs the local PostgreSQL cluster (the PostgreSQL pass of bin/test)")
    purge_queues()
    # A short delay per case keeps analyses in flight while the database goes away.
    worker = WorkerProcess(
        tmp_path / "worker.log",
        extra_env={"TELEDER_TEST_ANALYSIS_DELAY_S": "0.5", "TELEDER_STUCK_AFTER_S": "5"},
    ).start()
    try:
        cases = [submit(clinician, lesion, 1) for _ in range(6)]
        wait_for(
            lambda: Case.objects.filter(
                pk__in=[c.pk for c in cases], status=CaseStatus.AWAITING_REVIEW
            ).exists(),
            timeout_s=60,
        )
        connection.close()
        subprocess.run([*cluster, "restart"], check=True, capture_output=True, timeout=120)
        connection.close()
        wait_for(lambda: _can_query(), timeout_s=60)
        assert_each_case_analysed_once(cases, model)
    finally:
        worker.stop()


def _can_query() -> bool:
    try:
        connection.close()
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except Exception:  # noqa: BLE001 - the server is still starting
        time.sleep(0.5)
        return False
