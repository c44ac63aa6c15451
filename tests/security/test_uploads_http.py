"""The hostile corpus through the public API: every file gets a 400 in the API's error format with a clear
message naming the file, and nothing is stored."""

from pathlib import Path

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from cases.models import Case, LesionImage
from tests.security.hostile import CORPUS
from tests.support.images import upload

CASES = "/api/v1/cases/"


@pytest.fixture
def api(clinician, password):
    cache.clear()  # API throttle counters live in the cache
    client = APIClient()
    tokens = client.post(
        "/api/v1/auth/login/", {"username": "clin", "password": password}, format="json"
    ).json()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['access']}")
    yield client
    cache.clear()


@pytest.mark.django_db
@pytest.mark.parametrize("name", sorted(CORPUS))
def test_hostile_file_is_a_400_with_a_clear_message_and_nothing_is_stored(name, api, lesion, settings):
    factory, expected = CORPUS[name]

    response = api.post(CASES, {"lesion": lesion.pk, "images": [upload(name, factory())]}, format="multipart")

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert len(error["fields"]["images"]) == 1
    assert expected in error["fields"]["images"][0]
    assert "Traceback" not in response.content.decode()
    assert Case.objects.count() == 0 and LesionImage.objects.count() == 0
    media = Path(settings.MEDIA_ROOT)
    assert not media.exists() or not [p for p in media.rglob("*") if p.is_file()]
