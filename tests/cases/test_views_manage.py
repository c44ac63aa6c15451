"""Administrator pages: model versions (metrics, model card, activate and roll back), failed cases with
retry, and the audit trail filtered by user and object."""

import pytest
from django.urls import reverse

from cases import services
from cases.models import AuditEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, platform_admin):
    client.force_login(platform_admin)
    return client


def test_model_versions_list_activate_and_roll_back(admin_client, registered_model, tmp_path):
    from inference.registry import model_register
    from inference.selectors import active_model_version
    from tests.onnx_models import build_package

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


def test_failed_cases_can_be_retried(admin_client, make_case):
    case = make_case(1)
    services.case_claim_for_analysis(case_id=case.pk)
    services.case_fail(case_id=case.pk, reason="The model could not be loaded.")
    page = admin_client.get(reverse("failed_cases")).content
    assert b"The model could not be loaded." in page
    response = admin_client.post(reverse("case_retry", args=[case.pk]))
    assert response.status_code == 302
    case.refresh_from_db()
    assert case.status == "submitted" and case.failure_reason == ""
    assert b"No failed cases" in admin_client.get(reverse("failed_cases")).content
    # Retrying a case that is not failed is a message, not a 500.
    response = admin_client.post(reverse("case_retry", args=[case.pk]), follow=True)
    assert response.status_code == 200 and b"cannot become" in response.content


def test_audit_trail_filters_by_user_and_object(admin_client, clinician, make_case):
    case = make_case(1)
    AuditEvent.objects.create(action="other.thing", object_type="case", object_id="424242")
    by_user = admin_client.get(reverse("audit_trail"), {"actor": clinician.pk}).content.decode()
    assert "case.create" in by_user and "other.thing" not in by_user
    by_object = admin_client.get(reverse("audit_trail"), {"object_type": "case", "object_id": "424242"})
    assert "other.thing" in by_object.content.decode() and "case.create" not in by_object.content.decode()
    assert f"case:{case.pk}" in admin_client.get(reverse("audit_trail")).content.decode()
    assert admin_client.get(reverse("audit_trail"), {"actor": "junk"}).status_code == 200
