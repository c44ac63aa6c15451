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


def test_reviewing_twice_is_refused_with_the_existing_review(derm_client, make_case, record_analysis):
    case = make_case(1)
    record_analysis(case, [0.1])
    assert derm_client.post(reverse("review_case", args=[case.pk]), review_post()).status_code == 302
    response = derm_client.post(reverse("review_case", args=[case.pk]), review_post(diagnosis="bcc"))
    assert response.status_code == 400
    first = Review.objects.get()
    assert f"already reviewed (review {first.pk}" in response.content.decode()
    assert Review.objects.count() == 1


def test_a_contradictory_review_is_blocked_with_a_message(derm_client, make_case, record_analysis):
    case = make_case(1)
    record_analysis(case, [0.1])
    data = review_post(diagnosis="mel", malignant="no", management="reassure", ai_assessment="confirm")
    response = derm_client.post(reverse("review_case", args=[case.pk]), data)
    body = response.content.decode()
    assert response.status_code == 400
    assert "Melanoma is a malignant diagnosis" in body and "cannot be managed with" in body
    assert not Review.objects.exists() and Case.objects.get(pk=case.pk).status == "awaiting_review"


def test_confirming_the_ai_must_match_the_malignant_call(derm_client, make_case, record_analysis):
    case = make_case(1)
    record_analysis(case, [0.97])
    data = review_post(ai_assessment="confirm", diagnosis="nv", malignant="no", management="reassure")
    response = derm_client.post(reverse("review_case", args=[case.pk]), data)
    assert response.status_code == 400
    assert "the AI flagged this lesion" in response.content.decode()
    data["ai_assessment"] = "override"
    assert derm_client.post(reverse("review_case", args=[case.pk]), data).status_code == 302
    review = Review.objects.get()
    assert review.ai_flagged is True and review.agrees_with_ai is False


def test_required_review_fields_are_marked(derm_client, make_case, record_analysis):
    case = make_case(1)
    record_analysis(case, [0.4])
    body = derm_client.get(reverse("review_case", args=[case.pk])).content.decode()
    assert 'The AI\'s assessment <span aria-hidden="true">*</span>' in body
    assert 'Malignant <span aria-hidden="true">*</span>' in body


def test_a_reported_case_is_corrected_explicitly_with_a_reason(
    derm_client, dermatologist, make_case, record_analysis
):
    case = make_case(1)
    record_analysis(case, [0.1])
    derm_client.post(reverse("review_case", args=[case.pk]), review_post())
    services.case_mark_reported(case_id=case.pk)
    page = derm_client.get(reverse("review_case", args=[case.pk])).content.decode()
    assert "Correct this report" in page and 'id="review-form"' not in page
    correct = reverse("review_correct", args=[case.pk])
    assert "issues an addendum" in derm_client.get(correct).content.decode()
    response = derm_client.post(correct, review_post(diagnosis="bcc", reason=""))
    assert response.status_code == 400 and Review.objects.count() == 1
    response = derm_client.post(
        correct, review_post(diagnosis="bcc", reason="Histology: basal cell carcinoma.")
    )
    assert response.status_code == 302
    latest = Review.objects.order_by("-created_at", "-pk").first()
    assert latest.diagnosis == "bcc" and latest.supersedes is not None
    assert latest.correction_reason == "Histology: basal cell carcinoma."


def test_urgent_cases_come_first_then_risk_then_waiting(derm_client, make_case, record_analysis):
    routine_high = make_case(1, submission_key="routine-high")
    urgent_low = make_case(1, submission_key="urgent-low", priority="urgent")
    routine_low = make_case(1, submission_key="routine-low")
    urgent_high = make_case(1, submission_key="urgent-high", priority="urgent")
    for case, p in ((routine_high, 0.95), (urgent_low, 0.05), (routine_low, 0.05), (urgent_high, 0.9)):
        record_analysis(case, [p])
    response = derm_client.get(reverse("review_queue"))
    assert queue_ids(response) == [urgent_high.pk, urgent_low.pk, routine_high.pk, routine_low.pk]
    assert response.content.decode().count('class="badge badge-urgent"') == 2
    urgent_only = derm_client.get(reverse("review_queue"), {"priority": "urgent"})
    assert queue_ids(urgent_only) == [urgent_high.pk, urgent_low.pk]


def test_a_case_the_ai_could_not_assess_counts_as_high_risk(derm_client, make_case, record_analysis):
    high = make_case(1, submission_key="high")
    record_analysis(high, [0.9])
    unassessed = make_case(1, submission_key="unassessed")
    record_analysis(unassessed, [0.5])
    # The AI gate (another component) leaves the risk empty when it cannot assess the images.
    Case.objects.filter(pk=unassessed.pk).update(risk=None, risk_band="")
    assert queue_ids(derm_client.get(reverse("review_queue"))) == [unassessed.pk, high.pk]
