"""A case whose images live on S3 is analysed by a real worker process that reads them from S3."""

import pytest

from cases.models import Case, CaseStatus
from cases.services import case_submit
from inference.registry import model_activate, model_register
from tests.support.images import upload
from tests.support.onnx_models import build_package
from tests.support.workers import WorkerProcess, purge_queues, wait_for

pytestmark = pytest.mark.integration


def test_worker_analyses_a_case_stored_on_s3(
    transactional_db, s3_storage, s3_server, settings, tmp_path, clinician, lesion
):
    version = model_register(build_package(tmp_path / "pkg", name="s3-check", version="1.0.0"))
    model_activate(name=version.name, version=version.version)
    bucket = settings.STORAGES["default"]["OPTIONS"]["bucket_name"]
    purge_queues()
    worker = WorkerProcess(
        tmp_path / "worker.log",
        queues="inference",
        extra_env={
            "AWS_STORAGE_BUCKET_NAME": bucket,
            "AWS_S3_ENDPOINT_URL": s3_server,
            "AWS_S3_REGION_NAME": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
        },
    ).start()
    try:
        case = case_submit(
            actor=clinician, lesion=lesion, images=[upload(seed=1), upload("b.png", seed=2, fmt="PNG")]
        ).case
        assert all(s3_storage.exists(image.file.name) for image in case.images.all())

        analysed = wait_for(
            lambda: Case.objects.filter(pk=case.pk, status=CaseStatus.AWAITING_REVIEW).first(), timeout_s=60
        )
    finally:
        worker.stop()

    assert analysed.model_version_id == version.pk
    assert 0.0 <= analysed.risk <= 1.0
    assert analysed.images.filter(predictions__model_version=version).count() == 2
