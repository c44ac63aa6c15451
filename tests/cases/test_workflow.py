"""Drafts, requests for better images (two rounds), staged upload clean-up and turnaround statistics."""

import datetime as dt
import os
import time

import pytest
from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from django.urls import reverse
from django.utils import timezone

from cases import selectors, services
from cases.models import AuditEvent, Case, CaseStatus, Report
from cases.staging import staged_images_sweep
from inference.models import ModelStatus, ModelVersion
from tests.support.images import upload

pytestmark = pytest.mark.django_db


@pytest.fixture
def model_version(db):
    return ModelVersion.objects.create(
        name="workflow-ensemble",
        version="1.0.0",
        status=ModelStatus.ACTIVE,
        sha256="2" * 64,
        package_path="/nonexistent",
        manifest={"risk_bands": {"medium": 0.3, "high": 0.7}},
        threshold=0.5,
    )


@pytest.fixture
def analyse(model_version):
    def run(case, probability: float = 0.4):
        services.case_claim_for_analysis(case_id=case.pk)
        results = [
            services.ImageResult(
                image_id=i.pk, probability=probability, member_probabilities={}, latency_ms=1
            )
            for i in case.images.all()
        ]
        return services.case_record_analysis(case_id=case.pk, model_version=model_version, results=results)

    return run


def test_a_draft_collects_images_and_is_submitted_explicitly(make_case, clinician):
    draft = make_case(0, draft=True)
    assert draft.status == CaseStatus.DRAFT and draft.submitted_at is None
    with pytest.raises(ValidationError):
        services.case_submit_for_analysis(actor=clinician, case=draft)
    services.case_add_images(actor=clinician, case=draft, images=[upload("a.jpg", seed=1)])
    services.case_add_images(actor=clinician, case=draft, images=[upload("b.jpg", seed=2)])
    submitted = services.case_submit_for_analysis(actor=clinician, case=draft)
    assert submitted.status == CaseStatus.SUBMITTED and submitted.submitted_at is not None
    with pytest.raises(ValidationError) as caught:
        services.case_add_images(actor=clinician, case=draft, images=[upload("c.jpg", seed=3)])
    assert "this case is submitted" in caught.value.message_dict["images"][0]
    assert draft.images.count() == 2


def test_a_case_returned_for_images_is_resubmitted_with_both_rounds(
    make_case, clinician, dermatologist, analyse
):
    case = analyse(make_case(1), probability=0.4)
    request = services.case_request_images(actor=dermatologist, case=case, reason="blurred")
    case.refresh_from_db()
    assert case.status == CaseStatus.NEEDS_IMAGES and request.round == 2
    with pytest.raises(services.IllegalTransition):  # not reviewable while waiting for images
        services.review_submit(
            actor=dermatologist, case=case, diagnosis="nv", malignant=False, management="reassure"
        )
    with pytest.raises(ValidationError) as caught:  # the same images again do not answer the request
        services.case_submit_for_analysis(actor=clinician, case=case)
    assert "new image" in caught.value.message_dict["images"][0]
    services.case_add_images(actor=clinician, case=case, images=[upload("sharp.jpg", seed=7)])
    services.case_submit_for_analysis(actor=clinician, case=case)
    case = analyse(Case.objects.get(pk=case.pk), probability=0.9)
    assert case.status == CaseStatus.AWAITING_REVIEW and case.risk == pytest.approx(0.9)
    assert sorted(case.images.values_list("round", flat=True)) == [1, 2]
    request.refresh_from_db()
    assert request.resolved_at is not None
    assert AuditEvent.objects.filter(action="case.request_images", object_id=str(case.pk)).exists()


def test_other_reason_needs_a_note_and_only_awaiting_review_cases_return(make_case, dermatologist, analyse):
    case = analyse(make_case(1))
    with pytest.raises(ValidationError) as caught:
        services.case_request_images(actor=dermatologist, case=case, reason="other")
    assert "note" in caught.value.message_dict
    with pytest.raises(services.IllegalTransition):
        services.case_request_images(
            actor=dermatologist, case=make_case(1, submission_key="x"), reason="blurred"
        )


def test_web_request_for_images_and_resubmission(client, make_case, clinician, dermatologist, analyse):
    case = analyse(make_case(1))
    client.force_login(dermatologist)
    review_page = client.get(reverse("review_case", args=[case.pk])).content.decode()
    assert "Request better images" in review_page
    response = client.post(
        reverse("review_request_images", args=[case.pk]),
        {"reason": "no_dermoscopy", "note": "Use the scope."},
    )
    assert response.status_code == 302
    client.force_login(clinician)
    page = client.get(reverse("case_detail", args=[case.pk])).content.decode()
    assert "No dermoscopic image: Use the scope." in page and 'capture="environment"' in page
    client.post(reverse("case_add_images", args=[case.pk]), {"images": [upload("d.jpg", seed=11)]})
    response = client.post(reverse("case_submit", args=[case.pk]))
    assert response.status_code == 302
    page = client.get(reverse("case_detail", args=[case.pk])).content.decode()
    assert Case.objects.get(pk=case.pk).status == CaseStatus.SUBMITTED
    assert "Round 1: 1 image submitted." in page and "Round 2 resubmitted" in page


def test_web_draft_from_the_new_case_form(client, clinician, patient, lesion):
    client.force_login(clinician)
    form = {
        "patient": patient.pk,
        "lesion": lesion.pk,
        "priority": "urgent",
        "clinical_notes": "",
        "submission_key": "draft-key",
        "save_draft": "1",
    }
    response = client.post(reverse("case_create"), form)
    assert response.status_code == 302, response.content
    case = Case.objects.get()
    assert case.status == CaseStatus.DRAFT and case.images.count() == 0
    page = client.get(reverse("case_detail", args=[case.pk])).content.decode()
    assert "Draft: add images, then submit" in page
    response = client.post(reverse("case_submit", args=[case.pk]), follow=True)
    assert "Add at least one image before submitting." in response.content.decode()


def test_api_request_images_then_resubmit(client_for_api, make_case, clinician, dermatologist, analyse):
    case = analyse(make_case(1))
    derm = client_for_api(dermatologist)
    response = derm.post(
        f"/api/v1/cases/{case.pk}/image-requests/", {"reason": "wrong_lesion"}, format="json"
    )
    assert response.status_code == 201, response.content
    assert response.json()["round"] == 2
    clin = client_for_api(clinician)
    detail = clin.get(f"/api/v1/cases/{case.pk}/").json()
    assert detail["status"] == "needs_images" and detail["image_requests"][0]["reason"] == "wrong_lesion"
    added = clin.post(f"/api/v1/cases/{case.pk}/images/", {"images": [upload(seed=21)]}, format="multipart")
    assert added.status_code == 201 and added.json()[0]["round"] == 2
    assert clin.post(f"/api/v1/cases/{case.pk}/submit/").json()["status"] == "submitted"


@pytest.fixture
def client_for_api(db):
    from rest_framework.test import APIClient

    def make(user):
        client = APIClient()
        client.force_authenticate(user)
        return client

    return make


# Staged images of failed web submissions -----------------------------------------------------------------


def _staged(user) -> list[str]:
    try:
        return default_storage.listdir(f"staging/{user.pk}/")[1]
    except FileNotFoundError:
        return []


def test_failed_attempts_with_the_same_images_do_not_pile_up(client, clinician):
    client.force_login(clinician)
    for attempt in range(5):  # no patient chosen nor given: each attempt fails
        data = {
            "submission_key": f"k{attempt}",
            "priority": "routine",
            "images": [upload("a.jpg", seed=1), upload("b.jpg", seed=2)],
        }
        assert client.post(reverse("case_create"), data).status_code == 400
    assert len(_staged(clinician)) == 2


def test_staged_images_older_than_an_hour_are_swept(client, clinician):
    client.force_login(clinician)
    client.post(reverse("case_create"), {"submission_key": "k", "images": [upload("a.jpg", seed=1)]})
    (name,) = _staged(clinician)
    assert staged_images_sweep() == 0
    path = default_storage.path(f"staging/{clinician.pk}/{name}")
    old = time.time() - 2 * 3600
    os.utime(path, (old, old))
    assert staged_images_sweep() == 1 and _staged(clinician) == []


def test_a_successful_submit_deletes_the_staged_images(client, clinician, patient, lesion):
    client.force_login(clinician)
    client.post(reverse("case_create"), {"submission_key": "k1", "images": [upload("a.jpg", seed=1)]})
    (token,) = _staged(clinician)
    data = {"patient": patient.pk, "lesion": lesion.pk, "priority": "routine", "submission_key": "k2"}
    response = client.post(reverse("case_create"), {**data, "kept_images": [token]})
    assert response.status_code == 302 and _staged(clinician) == []


# Turnaround -----------------------------------------------------------------------------------------------


def _report(case, reviewer, *, submitted_hours_ago: float, signed_hours_ago: float, now):
    review = services.review_submit(
        actor=reviewer, case=case, diagnosis="nv", malignant=False, management="reassure"
    )
    Case.objects.filter(pk=case.pk).update(submitted_at=now - dt.timedelta(hours=submitted_hours_ago))
    return Report.objects.create(
        case=case,
        review=review,
        file=f"reports/{case.pk}/x.pdf",
        sha256=f"{case.pk:064d}",
        signer=reviewer,
        signer_name=reviewer.display_name,
        signed_at=now - dt.timedelta(hours=signed_hours_ago),
    )


def test_turnaround_median_and_p90_per_organization(client, make_case, dermatologist, analyse, org):
    now = timezone.now()
    spans = [(10, 8), (10, 6), (30, 0), (5, 4), (200, 199.5)]  # hours: 2, 4, 30, 1, 0.5; last one is old
    for index, (submitted, signed) in enumerate(spans):
        case = analyse(make_case(1, submission_key=f"t{index}"))
        _report(case, dermatologist, submitted_hours_ago=submitted, signed_hours_ago=signed, now=now)
    (row,) = selectors.turnaround_by_organization(dermatologist, now=now)
    assert row.organization == org.name and row.reports == 4
    assert row.median_hours == pytest.approx(3.0) and row.p90_hours == pytest.approx(30.0)
    client.force_login(dermatologist)
    home = client.get(reverse("home")).content.decode()
    assert "Turnaround" in home and "3.0 h" in home and "30.0 h" in home


def test_turnaround_in_the_api(client_for_api, make_case, dermatologist, analyse, org):
    now = timezone.now()
    case = analyse(make_case(1))
    _report(case, dermatologist, submitted_hours_ago=5, signed_hours_ago=3, now=now)
    body = client_for_api(dermatologist).get("/api/v1/stats/turnaround/").json()
    assert body["days"] == 7
    assert body["results"] == [
        {
            "organization_id": org.pk,
            "organization": org.name,
            "reports": 1,
            "median_hours": 2.0,
            "p90_hours": 2.0,
        }
    ]


def test_patient_typeahead_is_scoped_to_the_organization(client, clinician, other_clinician, org, other_org):
    from tests.support.factories import PatientFactory

    PatientFactory(organization=org, created_by=clinician, reference="NORTH-17")
    PatientFactory(organization=other_org, created_by=other_clinician, reference="NORTH-18")
    client.force_login(clinician)
    results = client.get(reverse("patient_search"), {"q": "north"}).json()["results"]
    assert [r["reference"] for r in results] == ["NORTH-17"]
    assert client.get(reverse("patient_search"), {"q": ""}).json()["results"] == []


def test_a_typed_reference_is_resolved_without_scripts(client, clinician, patient, lesion):
    client.force_login(clinician)
    data = {
        "patient_query": patient.reference.lower(),
        "lesion": lesion.pk,
        "priority": "routine",
        "submission_key": "typed",
        "images": [upload("a.jpg", seed=1)],
    }
    assert client.post(reverse("case_create"), data).status_code == 302
    assert Case.objects.get().lesion == lesion
    response = client.post(reverse("case_create"), {**data, "patient_query": "NOBODY", "submission_key": "n"})
    assert response.status_code == 400 and "No patient &#x27;NOBODY&#x27;" in response.content.decode()


def test_kept_images_that_expired_are_never_silently_dropped(client, clinician, patient, lesion):
    client.force_login(clinician)
    client.post(reverse("case_create"), {"submission_key": "k1", "images": [upload("a.jpg", seed=1)]})
    (token,) = _staged(clinician)
    default_storage.delete(f"staging/{clinician.pk}/{token}")  # the hourly sweep ran meanwhile
    data = {"patient": patient.pk, "lesion": lesion.pk, "priority": "routine", "submission_key": "k2"}
    response = client.post(reverse("case_create"), {**data, "kept_images": [token]})
    assert response.status_code == 400
    assert "no longer stored; add them again" in response.content.decode()
    assert not Case.objects.exists()
