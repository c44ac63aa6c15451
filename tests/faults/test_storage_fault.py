"""Fault 5: the media store refuses writes. The API answers 503 `storage_unavailable`, the web form comes back
with every field kept, and nothing is half-stored (no case, no patient, no file)."""

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from cases.models import Case, LesionImage, Patient
from tests.cases.api.conftest import login
from tests.cases.api.test_auth import assert_error
from tests.cases.test_views_cases import case_post
from tests.support.images import upload


@pytest.fixture
def client_for(db):
    def make(user) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {login(client, user.username)['access']}")
        return client

    return make


@pytest.fixture
def unwritable_media(settings, tmp_path):
    # A regular file where the media folder should be: every write fails with an OSError, even as root.
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    settings.MEDIA_ROOT = blocker / "media"
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(blocker / "media")},
        },
    }
    return blocker


def test_the_api_answers_503_storage_unavailable_and_stores_nothing(
    client_for, clinician, lesion, unwritable_media
):
    api = client_for(clinician)
    data = {"lesion": lesion.pk, "images": [upload("a.jpg", seed=1), upload("b.jpg", seed=2)]}
    response = api.post("/api/v1/cases/", data, format="multipart", HTTP_IDEMPOTENCY_KEY="k-1")
    error = assert_error(response, 503, "storage_unavailable")
    assert "nothing was stored" in error["message"]
    assert response["Retry-After"] == "60"
    assert Case.objects.count() == 0 and LesionImage.objects.count() == 0


def test_images_added_to_a_case_while_the_store_fails_are_not_half_stored(
    client_for, clinician, make_case, settings, tmp_path
):
    case = make_case(1, draft=True)  # images are added to drafts (and to cases returned for images)
    api = client_for(clinician)
    blocker = tmp_path / "blocker2"
    blocker.write_text("x")
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(blocker / "media")},
        },
    }
    response = api.post(
        f"/api/v1/cases/{case.pk}/images/", {"images": [upload("c.jpg", seed=3)]}, format="multipart"
    )
    assert_error(response, 503, "storage_unavailable")
    assert case.images.count() == 1


def test_the_web_form_keeps_every_field_and_stores_nothing(client, clinician, unwritable_media):
    client.force_login(clinician)
    response = client.post(reverse("case_create"), case_post())
    assert response.status_code == 503
    page = response.content.decode()
    assert "The image store is unavailable, so nothing was stored" in page
    assert 'value="PT-100"' in page and "Changed colour in 3 months." in page
    assert "<nav" in page or "<header" in page  # the site's layout, not a bare error page
    assert Case.objects.count() == 0 and Patient.objects.count() == 0
