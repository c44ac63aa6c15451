"""The dermatologist's queue and review submission; constant SQL queries per request as data grows."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from cases import services
from cases.models import Case, CaseStatus
from tests.cases.api.test_auth import assert_error
from tests.support.factories import LesionFactory, PatientFactory

REVIEW = {"diagnosis": "nv", "malignant": False, "management": "follow_up", "follow_up_months": 6}


def test_queue_lists_cases_awaiting_review_highest_risk_first(client_for, dermatologist, make_case, analyse):
    low, high, medium = make_case(), make_case(), make_case()
    for case, p in ((low, 0.1), (high, 0.9), (medium, 0.5)):
        analyse(case, probability=p)
    make_case()  # not analysed yet: not in the queue
    client = client_for(dermatologist)
    body = client.get("/api/v1/queue/").json()
    assert [c["id"] for c in body["results"]] == [high.pk, medium.pk, low.pk]
    urgent = make_case(priority="urgent")
    analyse(urgent, probability=0.05)
    body = client.get("/api/v1/queue/").json()
    assert [c["id"] for c in body["results"]] == [urgent.pk, high.pk, medium.pk, low.pk]
    by_priority = client.get("/api/v1/queue/", {"priority": "urgent"}).json()
    assert [c["id"] for c in by_priority["results"]] == [urgent.pk]
    assert [c["risk_band"] for c in body["results"]] == ["low", "high", "medium", "low"]
    assert [c["id"] for c in client.get("/api/v1/queue/", {"risk_band": "medium"}).json()["results"]] == [
        medium.pk
    ]
    analysing = client.get("/api/v1/queue/", {"status": "analysing"}).json()
    assert analysing["count"] == 0
    assert_error(client.get("/api/v1/queue/", {"status": "reported"}), 400)


def test_queue_excludes_organizations_the_dermatologist_does_not_serve(
    client_for, other_dermatologist, make_case, analyse
):
    analyse(make_case(), probability=0.9)
    assert client_for(other_dermatologist).get("/api/v1/queue/").json()["count"] == 0


def test_review_moves_the_case_on_and_a_second_review_is_409(client_for, dermatologist, make_case, analyse):
    case = make_case()
    analyse(case, probability=0.2)
    client = client_for(dermatologist)
    response = client.post(f"/api/v1/cases/{case.pk}/reviews/", REVIEW, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["diagnosis"] == "nv" and body["follow_up_months"] == 6
    assert body["agrees_with_ai"] is True and body["ai_flagged"] is False  # benign call, AI below threshold
    assert body["reviewer"]["id"] == dermatologist.pk
    assert Case.objects.get(pk=case.pk).status == CaseStatus.REVIEWED
    second = {"diagnosis": "mel", "management": "biopsy"}  # a retried or second-tab request
    error = assert_error(client.post(f"/api/v1/cases/{case.pk}/reviews/", second, format="json"), 409)
    assert error["code"] == "already_reviewed" and error["fields"]["existing_review"] == [str(body["id"])]
    detail = client.get(f"/api/v1/cases/{case.pk}/").json()
    assert detail["status"] == "reviewed" and [r["id"] for r in detail["reviews"]] == [body["id"]]


@pytest.mark.parametrize(
    "payload,field",
    [
        ({"diagnosis": "bcc", "malignant": False, "management": "reassure"}, "malignant"),
        ({"diagnosis": "other", "malignant": True, "management": "reassure"}, "management"),
        ({"diagnosis": "nv", "management": "reassure", "follow_up_months": 6}, "follow_up_months"),
        ({"diagnosis": "nv", "malignant": True, "management": "biopsy"}, "justification"),
        ({"diagnosis": "nv", "management": "reassure", "agrees_with_ai": False}, "agrees_with_ai"),
    ],
)
def test_contradictory_reviews_are_400_with_the_field(
    client_for, dermatologist, make_case, analyse, payload, field
):
    case = make_case()
    analyse(case, probability=0.1)
    response = client_for(dermatologist).post(f"/api/v1/cases/{case.pk}/reviews/", payload, format="json")
    assert field in assert_error(response, 400, "invalid")["fields"]
    assert Case.objects.get(pk=case.pk).status == CaseStatus.AWAITING_REVIEW


def test_malignant_is_derived_and_justification_recorded(client_for, dermatologist, make_case, analyse):
    case = make_case()
    analyse(case, probability=0.9)
    payload = {
        "diagnosis": "akiec",
        "management": "follow_up",
        "follow_up_months": 3,
        "justification": "Field cancerisation under topical treatment.",
    }
    body = client_for(dermatologist).post(f"/api/v1/cases/{case.pk}/reviews/", payload, format="json").json()
    assert body["malignant"] is True and body["agrees_with_ai"] is True
    assert body["justification"] == payload["justification"]


def test_correction_endpoint_needs_a_reported_case_and_a_reason(
    client_for, dermatologist, make_case, analyse
):
    case = make_case()
    analyse(case, probability=0.2)
    client = client_for(dermatologist)
    first = client.post(f"/api/v1/cases/{case.pk}/reviews/", REVIEW, format="json").json()
    url = f"/api/v1/cases/{case.pk}/corrections/"
    fix = {"diagnosis": "bcc", "management": "biopsy", "reason": "Histology: basal cell carcinoma."}
    assert_error(client.post(url, fix, format="json"), 409)  # the report is not issued yet
    services.case_mark_reported(case_id=case.pk)
    assert "reason" in assert_error(client.post(url, {**fix, "reason": "?"}, format="json"), 400)["fields"]
    response = client.post(url, fix, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["supersedes"] == first["id"] and body["correction_reason"] == fix["reason"]
    assert body["malignant"] is True


def test_review_of_a_case_not_yet_analysed_is_409(client_for, dermatologist, make_case):
    case = make_case()
    assert_error(
        client_for(dermatologist).post(f"/api/v1/cases/{case.pk}/reviews/", REVIEW, format="json"), 409
    )


def test_clinicians_cannot_review(client_for, clinician, make_case, analyse):
    case = make_case()
    analyse(case)
    assert_error(client_for(clinician).post(f"/api/v1/cases/{case.pk}/reviews/", REVIEW, format="json"), 403)
    assert Case.objects.get(pk=case.pk).status == CaseStatus.AWAITING_REVIEW


@pytest.mark.parametrize(
    "payload,field",
    [
        ({**REVIEW, "diagnosis": "cancer"}, "diagnosis"),
        ({**REVIEW, "follow_up_months": None}, "follow_up_months"),
        ({**REVIEW, "follow_up_months": 99}, "follow_up_months"),
        ({"diagnosis": "nv"}, "management"),
        ({"diagnosis": "other", "management": "biopsy"}, "malignant"),
        ({**REVIEW, "malignant": "perhaps"}, "malignant"),
    ],
)
def test_malformed_reviews_are_field_errors(client_for, dermatologist, make_case, analyse, payload, field):
    case = make_case()
    analyse(case)
    response = client_for(dermatologist).post(f"/api/v1/cases/{case.pk}/reviews/", payload, format="json")
    assert field in assert_error(response, 400, "invalid")["fields"]
    assert Case.objects.get(pk=case.pk).status == CaseStatus.AWAITING_REVIEW


def _queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, response.content
    return len(captured.captured_queries)


def _grow(make_case, analyse, org, clinician, n: int, images: int = 1) -> None:
    for _ in range(n):
        lesion = LesionFactory(patient=PatientFactory(organization=org, created_by=clinician))
        analyse(make_case(images, lesion_=lesion), probability=0.6)


def test_list_endpoints_use_a_constant_number_of_queries(
    client_for, dermatologist, clinician, org, make_case, analyse
):
    derm, clin = client_for(dermatologist), client_for(clinician)
    _grow(make_case, analyse, org, clinician, 2)
    before = {url: _queries(c, url) for c, url in ((derm, "/api/v1/queue/"), (clin, "/api/v1/cases/"))}
    _grow(make_case, analyse, org, clinician, 12, images=2)
    after = {url: _queries(c, url) for c, url in ((derm, "/api/v1/queue/"), (clin, "/api/v1/cases/"))}
    assert after == before
    assert max(after.values()) <= 6


def test_case_detail_uses_a_constant_number_of_queries(
    client_for, clinician, dermatologist, make_case, analyse, django_assert_max_num_queries
):
    small = make_case(1)
    analyse(small)
    large = make_case(6)
    analyse(large, probability=0.9)
    client = client_for(dermatologist)
    client.post(f"/api/v1/cases/{large.pk}/reviews/", REVIEW, format="json")
    counts = [_queries(client, f"/api/v1/cases/{case.pk}/") for case in (small, large)]
    assert counts[0] == counts[1]
    with django_assert_max_num_queries(12):
        client.get(f"/api/v1/cases/{large.pk}/")
