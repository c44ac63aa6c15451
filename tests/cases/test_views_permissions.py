"""Every case URL decides through the shared selectors: another organization's clinician gets 404 for each
one, a clinician never opens the review page, a dermatologist who does not serve the organization gets 404."""

import pytest
from django.urls import NoReverseMatch, reverse

from cases import services
from tests.support.factories import UserFactory

pytestmark = pytest.mark.django_db


def case_urls(case) -> list[str]:
    image = case.images.first()
    return [
        reverse("case_detail", args=[case.pk]),
        reverse("case_status", args=[case.pk]),
        reverse("case_image", args=[case.pk, image.pk]),
        reverse("review_case", args=[case.pk]),
    ]


@pytest.fixture
def reviewed_case(make_case, record_analysis, dermatologist):
    case = make_case(1)
    record_analysis(case, [0.7])
    services.review_submit(
        actor=dermatologist, case=case, diagnosis="mel", malignant=True, management="biopsy"
    )
    return case


def test_clinician_of_another_organization_gets_404_everywhere(client, other_clinician, make_case):
    case = make_case(1)
    client.force_login(other_clinician)
    for url in case_urls(case):
        assert client.get(url).status_code == 404, url
    assert client.post(reverse("review_case", args=[case.pk]), {}).status_code == 404
    assert client.post(reverse("case_retry", args=[case.pk])).status_code == 403


def test_report_download_is_404_for_another_organization(
    client, other_clinician, clinician, reviewed_case, settings, tmp_path
):
    from cases.reports import signing
    from cases.reports.services import report_generate

    try:
        reverse("report_download", kwargs={"uid": "00000000-0000-0000-0000-000000000000"})
    except NoReverseMatch:
        pytest.skip("the reports area has not wired report_download yet")
    settings.TELEDER_SIGNING_DIR = tmp_path / "signing"
    signing.ca_init()
    report = report_generate(review_id=reviewed_case.reviews.get().pk)
    url = reverse("report_download", kwargs={"uid": report.uid})
    client.force_login(other_clinician)
    assert client.get(url).status_code == 404
    client.force_login(clinician)
    response = client.get(url)
    assert response.status_code == 200
    # The clinician's case page links to it.
    assert url.encode() in client.get(reverse("case_detail", args=[reviewed_case.pk])).content


def test_clinician_of_the_same_organization_cannot_review(client, clinician, make_case, record_analysis):
    case = make_case(1)
    record_analysis(case, [0.5])
    client.force_login(clinician)
    assert client.get(reverse("review_case", args=[case.pk])).status_code == 403
    response = client.post(
        reverse("review_case", args=[case.pk]),
        {"ai_assessment": "confirm", "diagnosis": "nv", "malignant": "no", "management": "reassure"},
    )
    assert response.status_code == 403
    assert client.get(reverse("review_queue")).status_code == 403
    case.refresh_from_db()
    assert case.status == "awaiting_review"


def test_dermatologist_not_serving_the_organization_gets_404(client, other_org, make_case):
    case = make_case(1)
    outsider = UserFactory(role="dermatologist", organizations=[other_org])
    client.force_login(outsider)
    for url in case_urls(case):
        assert client.get(url).status_code == 404, url


def test_other_organizations_patients_are_404(client, other_clinician, patient):
    client.force_login(other_clinician)
    assert client.get(reverse("patient_detail", args=[patient.pk])).status_code == 404
    assert client.get(reverse("case_create"), {"patient": patient.pk}).status_code == 404


def test_admin_pages_are_for_admins_only(client, clinician, dermatologist):
    for user in (clinician, dermatologist):
        client.force_login(user)
        for name in ("model_list", "failed_cases", "audit_trail"):
            assert client.get(reverse(name)).status_code == 403


def test_error_pages_show_no_stack_trace(client, clinician):
    client.force_login(clinician)
    response = client.get(reverse("case_detail", args=[999999]))
    assert response.status_code == 404
    assert b"Traceback" not in response.content and b"Not found." in response.content
