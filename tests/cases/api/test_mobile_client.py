"""examples/mobile_client.py against a live server with a real Celery worker, model and signing CA."""

import importlib.util

import pytest

from cases.models import Case, CaseStatus
from cases.reports import signing
from inference.registry import model_activate, model_register
from tests.support.factories import PASSWORD
from tests.support.onnx_models import build_package
from tests.support.workers import ROOT

pytestmark = pytest.mark.integration


def load_client():
    spec = importlib.util.spec_from_file_location("mobile_client", ROOT / "examples" / "mobile_client.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def pipeline(request, transactional_db, settings, tmp_path):
    """Model and CA first, so that the worker process started afterwards sees the same folders."""
    settings.TELEDER_MODEL_DIR = tmp_path / "models"
    settings.TELEDER_BUNDLED_MODEL = tmp_path / "no-bundled-model"
    settings.TELEDER_SIGNING_DIR = tmp_path / "signing"
    settings.TELEDER_SIGNING_PASSPHRASE = ""
    version = model_register(build_package(tmp_path / "package"))
    model_activate(name=version.name, version=version.version)
    signing.ca_init()
    return request.getfixturevalue("celery_worker_process")


def test_the_example_client_runs_the_whole_flow(
    pipeline, live_server, clinician, dermatologist, tmp_path, capsys
):
    client = load_client()
    code = client.main(
        [
            "--url",
            live_server.url,
            "--username",
            "clin",
            "--password",
            PASSWORD,
            "--review-as",
            f"derm:{PASSWORD}",
            "--out",
            str(tmp_path / "out"),
            "--timeout",
            "90",
            "--interval",
            "0.5",
        ]
    )
    output = capsys.readouterr()
    assert code == 0, output.out + output.err + pipeline.log()[-3000:]
    case = Case.objects.get()
    assert case.status == CaseStatus.REPORTED
    assert "verification: valid" in output.out
    assert list((tmp_path / "out").glob("teleder-report-*.pdf"))


def test_the_example_client_reports_bad_credentials(live_server, clinician, capsys):
    code = load_client().main(["--url", live_server.url, "--username", "clin", "--password", "wrong"])
    assert code == 2
    assert "401" in capsys.readouterr().err
