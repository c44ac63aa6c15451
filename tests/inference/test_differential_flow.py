"""A calibrated package with a seven-class differential, end to end: the worker stores the calibrated risk and
the differential, the API returns it, and the case and review pages show the top three diagnoses."""

import math

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from cases.models import CaseStatus, Prediction
from inference.calibration import sigmoid
from inference.registry import model_activate, model_register
from inference.tasks import analyse_case
from tests.inference.members import DIFFERENTIAL_CLASSES, MALIGNANT_CLASSES, build_differential_package

CALIBRATION = {"method": "platt", "slope": 0.8, "intercept": -0.3}


@pytest.fixture
def analysed_case(db, tmp_path, make_case):
    raw = model_register(build_differential_package(tmp_path / "raw", version="0.9.0"))
    version = model_register(build_differential_package(tmp_path / "cal", calibration=CALIBRATION))
    model_activate(name=raw.name, version=raw.version)
    case = make_case(2)
    analyse_case.apply(args=[case.pk], throw=False)
    raw_probabilities = {p.image_id: p.probability for p in Prediction.objects.filter(image__case=case)}
    model_activate(name=version.name, version=version.version)
    case2 = make_case(2)
    analyse_case.apply(args=[case2.pk], throw=False)
    case2.refresh_from_db()
    return case, case2, raw_probabilities


def test_the_worker_stores_the_calibrated_risk_and_the_differential(analysed_case):
    case, calibrated_case, raw = analysed_case
    assert calibrated_case.status == CaseStatus.AWAITING_REVIEW
    predictions = list(Prediction.objects.filter(image__case=calibrated_case).order_by("image__position"))
    raws = [raw[i.pk] for i in case.images.order_by("position")]  # same generated images, same metadata
    for prediction, before in zip(predictions, raws, strict=True):
        classes = prediction.class_probabilities
        assert sorted(classes) == sorted(DIFFERENTIAL_CLASSES)  # PostgreSQL's jsonb keeps no key order
        assert sum(classes.values()) == pytest.approx(1.0, abs=1e-6)
        assert sum(classes[c] for c in MALIGNANT_CLASSES) == pytest.approx(prediction.probability, abs=1e-6)
        expected = float(sigmoid(0.8 * math.log(before / (1 - before)) - 0.3))
        assert prediction.probability == pytest.approx(expected, abs=1e-5)


def test_the_api_returns_the_differential(analysed_case, clinician):
    _, case, _ = analysed_case
    client = APIClient()
    client.force_authenticate(user=clinician)
    response = client.get(reverse("api:case-detail", kwargs={"pk": case.pk}))
    assert response.status_code == 200, response.content
    prediction = response.json()["images"][0]["predictions"][0]
    assert set(prediction["class_probabilities"]) == set(DIFFERENTIAL_CLASSES)
    assert sum(prediction["class_probabilities"].values()) == pytest.approx(1.0, abs=1e-5)


def test_the_case_and_review_pages_show_the_top_three_diagnoses(
    analysed_case, client, clinician, dermatologist
):
    _, case, _ = analysed_case
    prediction = Prediction.objects.filter(image__case=case).order_by("image__position").first()
    top = prediction.top_diagnoses()
    assert len(top) == 3 and top[0][1] >= top[1][1] >= top[2][1]
    for user, url in ((clinician, "case_detail"), (dermatologist, "review_case")):
        client.force_login(user)
        html = client.get(reverse(url, args=[case.pk])).content.decode()
        assert 'class="differential"' in html
        assert f"{top[0][0]}: {top[0][1]:.2f}" in html
