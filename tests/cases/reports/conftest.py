"""Fixtures for reports: a scratch signing folder, an analysed and reviewed case, a stored signed report."""

import pytest

from cases import services
from cases.reports import signing
from cases.reports.services import report_generate
from tests.support.analysis import record_probabilities
from tests.support.factories import ModelVersionFactory

PROBABILITIES = (0.82, 0.35)


@pytest.fixture(autouse=True)
def signing_dir(settings, tmp_path):
    """Every test signs with its own CA folder, with a generated passphrase file unless it sets one."""
    settings.TELEDER_SIGNING_DIR = tmp_path / "signing"
    settings.TELEDER_SIGNING_PASSPHRASE = ""
    settings.TELEDER_SIGNING_PKCS12 = ""
    settings.TELEDER_SIGNING_PKCS12_PASSPHRASE = ""
    return settings.TELEDER_SIGNING_DIR


@pytest.fixture
def signing_ca(signing_dir):
    return signing.ca_init()


@pytest.fixture
def model_version(db):
    return ModelVersionFactory(
        version="1.0.0", threshold=0.5, manifest={"risk_bands": {"medium": 0.3, "high": 0.7}}
    )


@pytest.fixture
def analysed_case(make_case, model_version):
    """A two-image case that went through the analysis services (probabilities 0.82 and 0.35)."""
    case = make_case(2, clinical_notes="Changing lesion, noticed by partner.", priority="urgent")
    return record_probabilities(case, model_version, PROBABILITIES, members=("m0", "m1"), latency_ms=4.0)


@pytest.fixture
def review(analysed_case, dermatologist):
    return services.review_submit(
        actor=dermatologist,
        case=analysed_case,
        diagnosis="mel",
        malignant=True,
        management="biopsy",
        notes="Asymmetric, blue-white veil. Excise with 2 mm margins.",
    )


@pytest.fixture
def report(review, signing_ca):
    return report_generate(review_id=review.pk)
