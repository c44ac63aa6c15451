"""Heatmaps end to end: the worker stores one PNG overlay per assessed image, the case and review pages lay it
over the image with an opacity control, the API gives a URL per prediction, the signed report prints it beside
the image, and nobody outside the case's organization can fetch it. A package without the map output serves as
before and the page says there is no heatmap."""

import io
import re

import pytest
from django.urls import reverse
from PIL import Image
from rest_framework.test import APIClient

from cases.audit import AuditAction
from cases.models import AuditEvent, CaseStatus, Prediction
from cases.reports.services import report_generate
from cases.services import review_submit
from inference.registry import model_activate, model_register
from inference.tasks import analyse_case
from tests.cases.reports.helpers import pdf_text, stored_bytes
from tests.inference.members import build_cam_package

HOW_TO_READ = "Warm areas are where the model's malignancy score is most sensitive"


def _analysed(tmp_path, make_case, *, cam: bool, name: str):
    version = model_register(build_cam_package(tmp_path / name, cam=cam, version=f"2.0.{int(cam)}"))
    model_activate(name=version.name, version=version.version)
    case = make_case(2)
    analyse_case.apply(args=[case.pk], throw=False)
    case.refresh_from_db()
    assert case.status == CaseStatus.AWAITING_REVIEW
    return case


@pytest.fixture
def mapped_case(db, tmp_path, make_case):
    return _analysed(tmp_path, make_case, cam=True, name="cam")


@pytest.fixture
def unmapped_case(db, tmp_path, make_case):
    return _analysed(tmp_path, make_case, cam=False, name="plain")


def _png(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def test_the_worker_stores_a_png_overlay_per_image_never_overwriting_one(mapped_case, make_case):
    predictions = list(Prediction.objects.filter(image__case=mapped_case).select_related("image"))
    assert len(predictions) == 2
    names = set()
    for prediction in predictions:
        assert prediction.heatmap.name.startswith(f"heatmaps/{mapped_case.pk}/")
        with prediction.heatmap.open("rb") as handle:
            overlay = _png(handle.read())
        assert overlay.mode == "RGBA" and max(overlay.size) == 320
        # The overlay keeps the image's aspect ratio, so it can be stretched over the image box.
        assert overlay.width / overlay.height == pytest.approx(
            prediction.image.width / prediction.image.height, rel=0.02
        )
        names.add(prediction.heatmap.name)
    # A re-analysis under the same model version writes new files; the earlier ones stay as they were.
    prediction = predictions[0]
    old_name = prediction.heatmap.name
    with prediction.heatmap.open("rb") as handle:
        before = handle.read()
    from cases.services.analysis import ImageResult, case_record_analysis

    results = [
        ImageResult(
            image_id=p.image_id, probability=0.5, member_probabilities={}, latency_ms=1.0, heatmap_png=b"x"
        )
        for p in predictions
    ]
    mapped_case.status = CaseStatus.ANALYSING
    mapped_case.save(update_fields=["status"])
    case_record_analysis(case_id=mapped_case.pk, model_version=mapped_case.model_version, results=results)
    prediction.refresh_from_db()
    assert prediction.heatmap.name not in names
    with prediction.heatmap.storage.open(old_name, "rb") as handle:
        assert handle.read() == before


def test_the_case_and_review_pages_lay_the_map_over_each_image(mapped_case, client, clinician, dermatologist):
    predictions = Prediction.objects.filter(image__case=mapped_case)
    for user, page in ((clinician, "case_detail"), (dermatologist, "review_case")):
        client.force_login(user)
        html = client.get(reverse(page, args=[mapped_case.pk])).content.decode()
        assert html.count('class="heatmap-overlay"') == 2
        assert html.count('class="heatmap-opacity"') == 2 and "js/heatmap.js" in html
        assert HOW_TO_READ in html
        for prediction in predictions:
            url = reverse("case_heatmap", args=[mapped_case.pk, prediction.pk])
            assert f'src="{url}"' in html
            response = client.get(url)
            assert response.status_code == 200 and response["Content-Type"] == "image/png"
            assert _png(b"".join(response.streaming_content)).mode == "RGBA"
    assert AuditEvent.objects.filter(action=AuditAction.HEATMAP_VIEW).count() == 4


def test_the_api_gives_a_heatmap_url_per_prediction(mapped_case, clinician):
    api = APIClient()
    api.force_authenticate(user=clinician)
    data = api.get(reverse("api:case-detail", kwargs={"pk": mapped_case.pk})).json()
    urls = [image["predictions"][0]["heatmap_url"] for image in data["images"]]
    assert all(url and url.startswith("http://testserver/api/v1/") for url in urls)
    response = api.get(urls[0])
    assert response.status_code == 200 and response["Content-Type"] == "image/png"


def test_another_organization_cannot_fetch_the_overlay(mapped_case, client, other_clinician):
    prediction = Prediction.objects.filter(image__case=mapped_case).first()
    page_url = reverse("case_heatmap", args=[mapped_case.pk, prediction.pk])
    api_url = reverse("api:prediction-heatmap", kwargs={"pk": mapped_case.pk, "prediction": prediction.pk})
    client.force_login(other_clinician)
    assert client.get(page_url).status_code == 404
    api = APIClient()
    api.force_authenticate(user=other_clinician)
    assert api.get(api_url).status_code == 404
    client.logout()
    assert client.get(page_url).status_code == 302  # to the login page
    assert APIClient().get(api_url).status_code == 401


def test_a_prediction_of_another_case_is_not_reachable_through_a_visible_case(
    mapped_case, make_case, client, clinician
):
    other = make_case(1)
    prediction = Prediction.objects.filter(image__case=mapped_case).first()
    client.force_login(clinician)
    assert client.get(reverse("case_heatmap", args=[other.pk, prediction.pk])).status_code == 404


def test_a_package_without_the_map_still_serves_and_the_page_says_so(unmapped_case, client, clinician):
    predictions = Prediction.objects.filter(image__case=unmapped_case)
    assert predictions.count() == 2 and all(p.probability is not None and not p.heatmap for p in predictions)
    client.force_login(clinician)
    html = client.get(reverse("case_detail", args=[unmapped_case.pk])).content.decode()
    assert "No heatmap: this model version does not produce one." in html and "heatmap-overlay" not in html
    api = APIClient()
    api.force_authenticate(user=clinician)
    data = api.get(reverse("api:case-detail", kwargs={"pk": unmapped_case.pk})).json()
    assert [image["predictions"][0]["heatmap_url"] for image in data["images"]] == [None, None]
    prediction = predictions.first()
    assert client.get(reverse("case_heatmap", args=[unmapped_case.pk, prediction.pk])).status_code == 404


@pytest.mark.parametrize("cam", [True, False])
def test_the_signed_report_prints_the_map_beside_each_image(
    cam, db, tmp_path, make_case, dermatologist, settings
):
    from cases.reports import signing

    settings.TELEDER_SIGNING_DIR = tmp_path / "signing"
    settings.TELEDER_SIGNING_PASSPHRASE = ""
    signing.ca_init()
    case = _analysed(tmp_path, make_case, cam=cam, name=f"report-{cam}")
    review = review_submit(
        actor=dermatologist, case=case, diagnosis="nv", malignant=False, management="reassure"
    )
    text = re.sub(r"\s+", " ", pdf_text(stored_bytes(report_generate(review_id=review.pk))))
    assert ("Heatmap of image 1" in text and "Heatmap of image 2" in text) is cam
    assert (HOW_TO_READ in text) is cam
