"""The inference app's administrator pages: model versions (metrics, model card, activate and roll back)."""

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, platform_admin):
    client.force_login(platform_admin)
    return client


def test_model_versions_list_activate_and_roll_back(admin_client, registered_model, tmp_path):
    from inference.registry import model_register
    from inference.selectors import active_model_version
    from tests.support.onnx_models import build_package

    candidate = model_register(build_package(tmp_path / "v2", version="2.0.0"))
    page = admin_client.get(reverse("model_list")).content.decode()
    assert "test-ensemble 1.0.0" in page and "test-ensemble 2.0.0" in page
    assert "auc: 0.5" in page

    response = admin_client.post(reverse("model_activate", args=[candidate.pk]), follow=True)
    assert active_model_version() == candidate
    assert b"is now the active model" in response.content
    assert b"Roll back to this version" in response.content

    admin_client.post(reverse("model_activate", args=[registered_model.pk]))
    assert active_model_version() == registered_model


def test_model_detail_shows_metrics_and_card(admin_client, registered_model):
    response = admin_client.get(reverse("model_detail", args=[registered_model.pk]))
    assert response.status_code == 200
    assert b"auc" in response.content and b"Model card" in response.content
    assert admin_client.get(reverse("model_detail", args=[999999])).status_code == 404


def test_activate_needs_post(admin_client, registered_model):
    assert admin_client.get(reverse("model_activate", args=[registered_model.pk])).status_code == 405
