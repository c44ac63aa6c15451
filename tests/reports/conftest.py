"""Fixtures for reports: a scratch signing folder, an analysed and reviewed case, a stored signed report."""

import pytest

from cases import services
from cases.reports import signing
from cases.reports.services import report_generate
from inference.models import ModelStatus, ModelVersion

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
    return ModelVersion.objects.create(
        name="test-ensemble",
        version="1.0.0",
        status=ModelStatus.ACTIVE,
        sha256="0" * 64,
        package_path="/nonexistent",
        manifest={"risk_bands": {"medium": 0.3, "high": 0.7}},
        threshold=0.5,
    )


@pytest.fixture
def analysed_case(make_case, model_version):
    """A two-image case that went through the analysis services (probabilities 0.82 and 0.35)."""
    case = make_case(2, clinical_notes="Changing lesion, noticed by partner.", priority="urgent")
    services.case_claim_for_analysis(case_id=case.pk)
    images = list(case.images.order_by("position"))
    results = [
        services.ImageResult(
            image_id=image.pk, probability=p, member_probabilities={"m0": p, "m1": p}, latency_ms=4.0
        )
        for image, p in zip(images, PROBABILITIES, strict=True)
    ]
    return services.case_record_analysis(case_id=case.pk, model_version=model_version, results=results)


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
