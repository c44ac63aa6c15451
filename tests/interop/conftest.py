"""Interop fixtures: a reported case (analysed, reviewed, signed) made through the real services."""

import pytest

from cases import services
from cases.reports import signing
from cases.reports.services import report_generate
from inference.models import ModelStatus, ModelVersion
from tests.cases.api.conftest import (  # noqa: F401 - shared API fixtures
    _fresh_throttles,
    api_client,
    client_for,
    login,
    other_dermatologist,
)

PROBABILITIES = (0.82, 0.35)


@pytest.fixture(autouse=True)
def signing_dir(settings, tmp_path):
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


def review_and_report(case, dermatologist, *, diagnosis="mel", malignant=True, **kwargs):
    """Review (or, with ``reason``, correct the issued report of) the case and sign the report."""
    action = services.review_correct if "reason" in kwargs else services.review_submit
    review = action(
        actor=dermatologist,
        case=case,
        diagnosis=diagnosis,
        malignant=malignant,
        management=kwargs.pop("management", "biopsy"),
        notes=kwargs.pop("notes", "Asymmetric, blue-white veil. Excise with 2 mm margins."),
        **kwargs,
    )
    return report_generate(review_id=review.pk)


@pytest.fixture
def reported_case(analysed_case, dermatologist, signing_ca):
    review_and_report(analysed_case, dermatologist)
    analysed_case.refresh_from_db()
    return analysed_case
