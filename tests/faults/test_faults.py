"""Faults injected into a running platform (real broker, real worker processes, real database).

Each test counts cases: every case submitted is analysed exactly once into one prediction per image,
none lost and none duplicated. Kill-the-worker and broken-model faults live in tests/inference (test_worker,
test_analysis, test_registry); this module covers the broker outage and the database restart.
"""

import contextlib
import shutil
import subprocess
import time

import pytest
import redis
from django.conf import settings
from django.db import connection

from cases import services
from cases.models import Case, CaseStatus, LesionImage, Prediction
from inference.registry import model_activate, model_register
from teleder import embedded_redis
from tests.support.images import upload
from tests.support.onnx_models import build_package
from tests.support.workers import WorkerProcess, purge_queues, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def model(transactional_db, tmp_path, settings):
    settings.TELEDER_MODEL_DIR = tmp_path / "models"
    version = model_register(build_package(tmp_path / "package"))
    return model_activate(name=version.name, version=version.version)


def submit(clinician, lesion, n_images: int = 1) -> Case:
    images = [upload(f"img{i}.jpg", seed=100 + i) for i in range(n_images)]
    return services.case_submit(actor=clinician, lesion=lesion, images=images).case


def assert_each_case_analysed_once(cases: list[Case], model) -> None:
    ids = [c.pk for c in cases]
    wait_for(
        lambda: Case.objects.filter(pk__in=ids, status=CaseStatus.AWAITING_REVIEW).count() == len(ids),
        timeout_s=120,
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
    model, clinician, lesion, tmp_path
):
    if not settings.EMBEDDED_REDIS and shutil.which("redis-server") is None:
        pytest.skip("redis-server is needed to restart the local Redis")
    broker = Broker()
    purge_queues()
    # The worker runs the sweeper every 2 s (Celery beat in the worker) and treats 2 s as stuck.
    worker = WorkerProcess(
        tmp_path / "worker.log",
        extra_env={"TELEDER_SWEEP_INTERVAL_S": "2", "TELEDER_STUCK_AFTER_S": "2"},
        extra_args=["-B", "-s", str(tmp_path / "beat-schedule")],
    ).start()
    try:
        before = [submit(clinician, lesion, 2) for _ in range(2)]
        assert_each_case_analysed_once(before, model)

        broker.stop()
        during = [submit(clinician, lesion, 1) for _ in range(4)]  # the clinician's submit still succeeds
        stored = Case.objects.filter(pk__in=[c.pk for c in during])
        assert stored.count() == 4
        assert set(stored.values_list("status", flat=True)) == {CaseStatus.SUBMITTED}
        assert LesionImage.objects.filter(case__in=stored).count() == 4

        broker.start()
        assert_each_case_analysed_once(before + during, model)
    finally:
        if not broker.is_up():
            broker.start()
        worker.stop()
    lost = Case.objects.exclude(status=CaseStatus.AWAITING_REVIEW).filter(
        pk__in=[c.pk for c in before + during]
    )
    assert not lost.exists()


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
