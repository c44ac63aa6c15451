"""The pipeline with a real Celery worker process and broker: submit -> analyse_case -> awaiting review,
the failure paths a worker meets, and a worker killed in the middle of a case."""

import os
import time

import pytest

from cases import services
from cases.models import Case, CaseStatus, Prediction
from inference.registry import model_activate, model_register
from tests.support.images import upload
from tests.support.workers import WorkerProcess, purge_queues, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def model(transactional_db, package):
    version = model_register(package)
    return model_activate(name=version.name, version=version.version)


def submit(clinician, lesion, n_images: int = 1, *, analyse: bool = True) -> Case:
    images = [upload(f"img{i}.jpg", seed=10 + i) for i in range(n_images)]
    return services.case_submit(actor=clinician, lesion=lesion, images=images, analyse=analyse).case


def status_becomes(case: Case, status: str, timeout_s: float = 60.0) -> Case:
    wait_for(lambda: Case.objects.filter(pk=case.pk, status=status).exists(), timeout_s=timeout_s)
    return Case.objects.get(pk=case.pk)


def test_a_submitted_case_is_analysed_by_the_worker(celery_worker_process, model, clinician, lesion):
    case = status_becomes(submit(clinician, lesion, 3), CaseStatus.AWAITING_REVIEW)
    predictions = Prediction.objects.filter(image__case=case, model_version=model)
    assert predictions.count() == 3
    assert case.risk == pytest.approx(max(p.probability for p in predictions))
    assert case.analysis_attempts == 1


def test_the_worker_fails_cases_it_cannot_analyse_and_goes_on(
    celery_worker_process, model, clinician, lesion
):
    corrupt = submit(clinician, lesion, analyse=False)
    with open(corrupt.images.get().file.path, "wb") as handle:
        handle.write(b"\xff\xd8\xff\xe0 not a real jpeg")
    missing = submit(clinician, lesion, analyse=False)
    os.remove(missing.images.get().file.path)
    services.enqueue_analysis(corrupt.pk)
    services.enqueue_analysis(missing.pk)
    healthy = submit(clinician, lesion)
    assert "damaged in storage" in status_becomes(corrupt, CaseStatus.FAILED).failure_reason
    assert "missing from storage" in status_becomes(missing, CaseStatus.FAILED).failure_reason
    status_becomes(healthy, CaseStatus.AWAITING_REVIEW)


def test_a_worker_killed_mid_task_and_a_lost_message_lose_no_case(
    transactional_db, model, clinician, lesion, tmp_path
):
    purge_queues()
    slow = WorkerProcess(tmp_path / "slow.log", extra_env={"TELEDER_TEST_ANALYSIS_DELAY_S": "60"}).start()
    try:
        interrupted = submit(clinician, lesion, 2)
        status_becomes(interrupted, CaseStatus.ANALYSING)
        slow.kill()  # SIGKILL while the case is being analysed
    finally:
        slow.stop()
    never_published = submit(clinician, lesion, analyse=False)  # as if the broker lost the message
    time.sleep(1.5)
    fresh = WorkerProcess(tmp_path / "fresh.log", extra_env={"TELEDER_STUCK_AFTER_S": "1"}).start()
    try:
        # The fresh worker's start-up sweep publishes both again.
        interrupted = status_becomes(interrupted, CaseStatus.AWAITING_REVIEW)
        status_becomes(never_published, CaseStatus.AWAITING_REVIEW)
    finally:
        fresh.stop()
    assert interrupted.analysis_attempts == 2
    assert Prediction.objects.filter(image__case=interrupted).count() == 2
    assert Prediction.objects.filter(image__case=never_published).count() == 1
