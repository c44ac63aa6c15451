"""The dermatologist's queue (order, filters, counts) and the review page (confirm or override, errors)."""

import pytest
from django.urls import reverse

from cases import services
from cases.models import AuditEvent, Case, Review
from tests.support.factories import LesionFactory, OrganizationFactory, PatientFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def derm_client(client, dermatologist):
    client.force_login(dermatologist)
    return client


def queue_ids(response) -> list[int]:
    body = response.content.decode()
    return [int(part.split('"')[0]) for part in body.split('class="queue-row" data-case-id="')[1:]]


def review_post(**overrides) -> dict:
    data = {
        "ai_assessment": "override",
        "diagnosis": "mel",
        "malignant": "yes",
        "management": "biopsy",
        "follow_up_months": "",
        "notes": "Atypical network.",
    }
    data.update(overrides)
    return data


def test_queue_is_ordered_by_risk_then_waiting_time(derm_client, make_case, record_analysis):
    low = make_case(1, submission_key="low")
    high_old = make_case(1, submission_key="high-old")
    high_new = make_case(1, submission_key="high-new")
    waiting = make_case(1, submission_key="not-analysed")
    record_analysis(low, [0.1])
    record_analysis(high_old, [0.9])
    record_analysis(high_new, [0.9])
    response = derm_client.get(reverse("review_queue"))
    assert queue_ids(response) == [high_old.pk, high_new.pk, low.pk]
    assert waiting.pk not in queue_ids(response)
    assert b'<strong id="queue-total">3</strong>' in response.content


def test_queue_filters_by_band_status_and_organization(
    derm_client, dermatologist, make_case, record_analysis, other_org
):
    low, high = make_case(1, submission_key="a"), make_case(1, submission_key="b")
    record_analysis(low, [0.1])
    record_analysis(high, [0.95])
    pending = make_case(1, submission_key="c")
    assert queue_ids(derm_client.get(reverse("review_queue"), {"band": "high"})) == [high.pk]
    assert queue_ids(derm_client.get(reverse("review_queue"), {"status": "submitted"})) == [pending.pk]
    dermatologist.organizations.add(other_org)
    assert queue_ids(derm_client.get(reverse("review_queue"), {"organization": other_org.pk})) == []
    assert queue_ids(derm_client.get(reverse("review_queue"), {"organization": "not-a-number"})) == [
        high.pk,
        low.pk,
    ]


def test_queue_spans_the_organizations_served_and_no_others(client, make_case, record_analysis, org):
    served = OrganizationFactory(slug="east")
    unserved = OrganizationFactory(slug="west")
    derm = UserFactory(role="dermatologist", organizations=[org, served])
    clinician_east = UserFactory(role="clinician", organizations=[served])
    clinician_west = UserFactory(role="clinician", organizations=[unserved])
    mine = make_case(1)
    east = make_case(
        1, actor=clinician_east, lesion_=LesionFactory(patient=PatientFactory(organization=served))
    )
    west = make_case(
        1, actor=clinician_west, lesion_=LesionFactory(patient=PatientFactory(organization=unserved))
    )
    for case, p in ((mine, 0.5), (east, 0.8), (west, 0.99)):
        record_analysis(case, [p])
    client.force_login(derm)
    assert queue_ids(client.get(reverse("review_queue"))) == [east.pk, mine.pk]


def test_empty_queue_says_so(derm_client):
    assert b"No cases match" in derm_client.get(reverse("review_queue")).content


def test_review_page_shows_images_members_and_history(derm_client, make_case, record_analysis, lesion):
    earlier = make_case(1, submission_key="earlier")
    case = make_case(2, submission_key="now")
    record_analysis(case, [0.4, 0.8])
    response = derm_client.get(reverse("review_case", args=[case.pk]))
    body = response.content.decode()
    assert response.status_code == 200
    assert body.count('class="image-card"') == 2
    assert "member0: 0.800" in body and "member1: 0.400" in body
    assert f"Case {earlier.pk}</a>" in body
    assert 'id="review-form"' in body


def test_override_moves_the_case_to_reviewed(derm_client, dermatologist, make_case, record_analysis):
    case = make_case(1)
    record_analysis(case, [0.1])
    response = derm_client.post(reverse("review_case", args=[case.pk]), review_post())
    assert response.status_code == 302 and response["Location"] == reverse("review_queue")
    case.refresh_from_db()
    assert case.status == "reviewed"
    review = Review.objects.get(case=case)
    assert review.reviewer == dermatologist and review.diagnosis == "mel" and review.malignant
    assert review.agrees_with_ai is False
    assert AuditEvent.objects.filter(action="review.create", object_id=str(review.pk)).exists()


def test_confirm_records_agreement(derm_client, make_case, record_analysis):
    case = make_case(1)
    record_analysis(case, [0.1])
    data = review_post(
        ai_assessment="confirm", diagnosis="nv", malignant="no", management="follow_up", follow_up_months="6"
    )
    assert derm_client.post(reverse("review_case", args=[case.pk]), data).status_code == 302
    review = Review.objects.get(case=case)
    assert review.agrees_with_ai is True and review.follow_up_months == 6


def test_review_errors_keep_what_was_typed(derm_client, make_case, record_analysis):
    case = make_case(1)
    record_analysis(case, [0.1])
    data = review_post(management="follow_up", follow_up_months="", malignant="")
    response = derm_client.post(reverse("review_case", args=[case.pk]), data)
    assert response.status_code == 400
    body = response.content.decode()
    assert "This field is required." in body
    assert "Atypical network." in body and '<option value="mel" selected>' in body
    response = derm_client.post(reverse("review_case", args=[case.pk]), review_post(management="follow_up"))
    assert response.status_code == 400
    assert "Give the follow-up interval in months (1-60)." in response.content.decode()
    case.refresh_from_db()
    assert case.status == "awaiting_review" and not Review.objects.exists()


def test_a_case_not_yet_analysed_cannot_be_reviewed(derm_client, make_case):
    case = make_case(1)
    response = derm_client.post(reverse("review_case", args=[case.pk]), review_post())
    assert response.status_code == 400
    assert b"cannot be reviewed now" in response.content
    assert Case.objects.get(pk=case.pk).status == "submitted"


def test_reviewing_twice_is_refused_without_a_500(derm_client, make_case, record_analysis):
    case = make_case(1)
    record_analysis(case, [0.1])
    assert derm_client.post(reverse("review_case", args=[case.pk]), review_post()).status_code == 302
    response = derm_client.post(reverse("review_case", args=[case.pk]), review_post())
    assert response.status_code == 400
    assert Review.objects.count() == 1


def test_a_reported_case_can_be_corrected(derm_client, dermatologist, make_case, record_analysis):
    case = make_case(1)
    record_analysis(case, [0.1])
    derm_client.post(reverse("review_case", args=[case.pk]), review_post())
    services.case_mark_reported(case_id=case.pk)
    page = derm_client.get(reverse("review_case", args=[case.pk])).content
    assert b"issues an addendum" in page
    response = derm_client.post(reverse("review_case", args=[case.pk]), review_post(diagnosis="bcc"))
    assert response.status_code == 302
    latest = Review.objects.order_by("-created_at", "-pk").first()
    assert latest.diagnosis == "bcc" and latest.supersedes is not None
