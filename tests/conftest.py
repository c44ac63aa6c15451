"""Shared fixtures: organizations, users per role, cases made through the service layer, the embedded
broker and a real Celery worker process for integration tests."""

import os
import shutil
from pathlib import Path

import pytest
from django.conf import settings

from cases import services
from cases.vocabulary import Role
from tests.support.analysis import record_probabilities
from tests.support.factories import PASSWORD, LesionFactory, OrganizationFactory, PatientFactory, UserFactory
from tests.support.images import upload

# Kept importable from here for tests written before tests/support/ (other branches of this release).
from tests.support.workers import ROOT as ROOT
from tests.support.workers import WorkerProcess as WorkerProcess
from tests.support.workers import purge_queues
from tests.support.workers import wait_for as wait_for
from tests.support.workers import worker_env as worker_env


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


@pytest.fixture
def queues():
    """Empty broker queues before and after the test (for tests that count what was enqueued)."""
    purge_queues()
    yield
    purge_queues()


@pytest.fixture
def celery_worker_process(transactional_db, tmp_path):
    """A started worker on the inference and default queues; stopped after the test."""
    purge_queues()
    worker = WorkerProcess(tmp_path / "worker.log").start()
    yield worker
    worker.stop()


@pytest.fixture
def registered_model(db, tmp_path, settings):
    """A real test model package (tests/onnx_models), registered and active."""
    from inference.registry import model_activate, model_register
    from tests.support.onnx_models import build_package

    settings.TELEDER_MODEL_DIR = tmp_path / "models"
    version = model_register(build_package(tmp_path / "registered-package"))
    return model_activate(name=version.name, version=version.version)


@pytest.fixture
def record_analysis(registered_model):
    """Record an AI result with chosen probabilities (one per image) through the case services."""

    def record(case, probabilities):
        return record_probabilities(case, registered_model, probabilities)

    return record
