"""Shared fixtures: organizations, users per role, cases made through the service layer, the embedded
broker and a real Celery worker process for integration tests."""

import os
import shutil
import time
from pathlib import Path

import pytest
from django.conf import settings

from cases import services
from cases.vocabulary import Role
from teleder import workers
from tests.factories import PASSWORD, LesionFactory, OrganizationFactory, PatientFactory, UserFactory
from tests.images import upload

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def broker():
    """The embedded Redis on the default settings; the configured Redis (REDIS_URL) otherwise."""
    from teleder import embedded_redis

    process = None
    if settings.EMBEDDED_REDIS:
        process = embedded_redis.start(settings.EMBEDDED_REDIS_SOCKET)
    yield settings.CELERY_BROKER_URL
    embedded_redis.stop(process)
    if settings.EMBEDDED_REDIS:
        # A fault test may have restarted the embedded broker as a new process: stop that one too.
        embedded_redis.shutdown(settings.EMBEDDED_REDIS_SOCKET)
    # The per-run scratch folder (test database file, media, socket) goes with the run.
    if Path(settings.VAR_DIR).name.startswith("teleder-test-") and not os.environ.get("TELEDER_VAR_DIR"):
        shutil.rmtree(settings.VAR_DIR, ignore_errors=True)


@pytest.fixture(autouse=True)
def _media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.STORAGES = (
        {
            **settings.STORAGES,
            "default": {
                "BACKEND": "django.core.files.storage.FileSystemStorage",
                "OPTIONS": {"location": str(tmp_path / "media")},
            },
        }
        if not settings.AWS_STORAGE_BUCKET_NAME
        else settings.STORAGES
    )
    settings.AXES_ENABLED = False


@pytest.fixture
def password() -> str:
    return PASSWORD


@pytest.fixture
def org(db):
    return OrganizationFactory(name="North Clinic", slug="north")


@pytest.fixture
def other_org(db):
    return OrganizationFactory(name="South Hospital", slug="south")


@pytest.fixture
def clinician(org):
    return UserFactory(username="clin", role=Role.CLINICIAN, organizations=[org])


@pytest.fixture
def other_clinician(other_org):
    return UserFactory(username="otherclin", role=Role.CLINICIAN, organizations=[other_org])


@pytest.fixture
def dermatologist(org):
    return UserFactory(username="derm", role=Role.DERMATOLOGIST, organizations=[org])


@pytest.fixture
def platform_admin(db):
    return UserFactory(username="admin", role=Role.ADMIN, is_staff=True)


@pytest.fixture
def patient(org, clinician):
    return PatientFactory(organization=org, created_by=clinician)


@pytest.fixture
def lesion(patient):
    return LesionFactory(patient=patient)


@pytest.fixture
def make_case(clinician, lesion):
    """Submit a case through the service, as a clinician would (analysis not enqueued unless asked)."""

    def make(n_images: int = 1, *, actor=None, lesion_=None, analyse: bool = False, **kwargs):
        images = [upload(f"img{i}.jpg", seed=i) for i in range(n_images)]
        return services.case_submit(
            actor=actor or clinician, lesion=lesion_ or lesion, images=images, analyse=analyse, **kwargs
        ).case

    return make


def worker_env(extra: dict | None = None) -> dict:
    """Environment for a child process that must share this test run's database, media and broker."""
    from django.db import connection

    env = dict(os.environ)
    env["TELEDER_VAR_DIR"] = str(settings.VAR_DIR)
    env["TELEDER_TESTING"] = "1"
    env["TELEDER_MEDIA_ROOT"] = str(settings.MEDIA_ROOT)
    env["TELEDER_MODEL_DIR"] = str(settings.TELEDER_MODEL_DIR)
    env["TELEDER_SIGNING_DIR"] = str(settings.TELEDER_SIGNING_DIR)
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        env["DATABASE_URL"] = f"sqlite:///{db['NAME']}"
    else:
        user = db.get("USER") or "postgres"
        host = db.get("HOST") or "127.0.0.1"
        port = db.get("PORT") or 5432
        env["DATABASE_URL"] = f"postgres://{user}@{host}:{port}/{db['NAME']}"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


class WorkerProcess(workers.WorkerProcess):
    """A real ``celery worker`` child process (the project's launcher, ``teleder.workers``) on this test run's
    database, media and broker: solo pool, one task at a time."""

    def __init__(
        self,
        log_path: Path,
        queues: str = "inference,default",
        extra_env: dict | None = None,
        extra_args: list[str] | None = None,
    ):
        super().__init__([], log_path=log_path)
        self.queues = queues
        self.extra_env = extra_env
        self.extra_args = extra_args or []

    def start(self, timeout_s: float = 60.0) -> "WorkerProcess":
        self.command = workers.worker_command(
            name=f"test-{time.monotonic_ns()}@%h",
            queues=self.queues,
            pool="solo",
            concurrency=1,
            extra_args=self.extra_args,
        )
        self.env = worker_env(self.extra_env)  # read now: a test may have changed settings since __init__
        return super().start(timeout_s=timeout_s)


def purge_queues() -> None:
    from teleder.celery import app

    with app.connection_for_write() as conn:
        for queue in ("inference", "default"):
            conn.default_channel.queue_purge(queue) if _queue_exists(conn, queue) else None


def _queue_exists(conn, queue: str) -> bool:
    try:
        conn.default_channel.queue_declare(queue=queue, passive=True)
        return True
    except Exception:  # noqa: BLE001
        return False


@pytest.fixture
def celery_worker_process(transactional_db, tmp_path):
    """A started worker on the inference and default queues; stopped after the test."""
    purge_queues()
    worker = WorkerProcess(tmp_path / "worker.log").start()
    yield worker
    worker.stop()


def wait_for(predicate, timeout_s: float = 60.0, interval_s: float = 0.2):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"condition not met within {timeout_s} s")


@pytest.fixture
def registered_model(db, tmp_path, settings):
    """A real test model package (tests/onnx_models), registered and active."""
    from inference.registry import model_activate, model_register
    from tests.onnx_models import build_package

    settings.TELEDER_MODEL_DIR = tmp_path / "models"
    version = model_register(build_package(tmp_path / "registered-package"))
    return model_activate(name=version.name, version=version.version)


@pytest.fixture
def record_analysis(registered_model):
    """Record an AI result with chosen probabilities (one per image) through the case services."""

    def record(case, probabilities):
        services.case_claim_for_analysis(case_id=case.pk)
        images = list(case.images.order_by("position"))
        results = [
            services.ImageResult(
                image_id=image.pk,
                probability=p,
                member_probabilities={"member0": p, "member1": p},
                latency_ms=1.0,
            )
            for image, p in zip(images, probabilities, strict=True)
        ]
        return services.case_record_analysis(case_id=case.pk, model_version=registered_model, results=results)

    return record
