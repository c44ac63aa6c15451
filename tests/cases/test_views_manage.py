"""Administrator pages: failed cases with retry, and the audit trail filtered by user and object (the model
version pages are tests/inference/test_views.py)."""

import pytest
from django.urls import reverse

from cases import services
from cases.models import AuditEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, platform_admin):
    client.force_login(platform_admin)
    return client


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
