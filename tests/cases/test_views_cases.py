"""Clinician pages: patients, the new-case form (errors keep input; a double submit is one case), the
live case page's JSON, and permission-checked, audited image reads."""

import pytest
from django.urls import reverse

from cases import services
from cases.models import AuditEvent, Case, Lesion, Patient
from tests.support.images import image_bytes, upload

pytestmark = pytest.mark.django_db


@pytest.fixture
def clin_client(client, clinician):
    client.force_login(clinician)
    return client


def case_post(**overrides) -> dict:
    data = {
        "patient": "",
        "new_patient_reference": "PT-100",
        "new_patient_sex": "female",
        "new_patient_year_of_birth": "1960",
        "lesion": "",
        "site": "torso",
        "lesion_label": "left scapula",
        "clinical_notes": "Changed colour in 3 months.",
        "priority": "routine",
        "submission_key": "6b1f0c6e0a3b4b3f9a0f4c1e2d3c4b5a",
        "images": [upload("a.jpg", seed=1), upload("b.png", fmt="PNG", content_type="image/png", seed=2)],
    }
    data.update(overrides)
    return data


# Patients -----------------------------------------------------------------------------------------------


def test_clinician_creates_and_finds_a_patient(clin_client, org):
    response = clin_client.post(
        reverse("patient_list"), {"reference": "ABC-1", "sex": "male", "year_of_birth": 1980}
    )
    patient = Patient.objects.get(reference="ABC-1")
    assert response.status_code == 302 and response["Location"] == reverse(
        "patient_detail", args=[patient.pk]
    )
    assert patient.organization == org
    assert b"ABC-1" in clin_client.get(reverse("patient_list"), {"q": "abc"}).content
    assert b"No patient matches" in clin_client.get(reverse("patient_list"), {"q": "zzz"}).content


def test_duplicate_patient_reference_is_a_form_error(clin_client, patient):
    response = clin_client.post(reverse("patient_list"), {"reference": patient.reference, "sex": "male"})
    assert response.status_code == 400
    assert b"already exists" in response.content
    assert f'value="{patient.reference}"'.encode() in response.content


def test_patient_search_shows_only_own_organization(clin_client, other_org, other_clinician):
    services.patient_create(actor=other_clinician, organization=other_org, reference="SOUTH-1")
    assert b"SOUTH-1" not in clin_client.get(reverse("patient_list")).content


# New case -----------------------------------------------------------------------------------------------


def test_submit_a_case_with_a_new_patient_and_two_images(clin_client, clinician):
    response = clin_client.post(reverse("case_create"), case_post())
    case = Case.objects.get(submitted_by=clinician)
    assert response.status_code == 302 and response["Location"] == reverse("case_detail", args=[case.pk])
    assert case.images.count() == 2
    assert case.lesion.patient.reference == "PT-100"
    assert case.site_at_submission == "torso" and case.sex_at_submission == "female"
    assert case.clinical_notes == "Changed colour in 3 months."


def test_submit_for_an_existing_patient_and_lesion(clin_client, patient, lesion):
    response = clin_client.post(
        reverse("case_create"), case_post(patient=patient.pk, lesion=lesion.pk, new_patient_reference="")
    )
    assert response.status_code == 302
    assert Case.objects.get().lesion == lesion
    assert Patient.objects.count() == 1


def test_a_second_submit_of_the_same_form_is_the_same_case(clin_client, clinician):
    first = clin_client.post(reverse("case_create"), case_post())
    second = clin_client.post(reverse("case_create"), case_post())
    assert Case.objects.filter(submitted_by=clinician).count() == 1
    assert second.status_code == 302 and second["Location"] == first["Location"]


def test_the_form_carries_a_fresh_submission_key(clin_client):
    first = clin_client.get(reverse("case_create")).content
    second = clin_client.get(reverse("case_create")).content
    key = b'name="submission_key"'
    assert key in first
    assert first.split(key)[1][:60] != second.split(key)[1][:60]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (upload("notes.txt", b"just some text, not a picture", "text/plain"), b"is not a JPEG or PNG image"),
        (
            upload("renamed.jpg", b"%PDF-1.4 renamed pdf" + b"\0" * 200, "image/jpeg"),
            b"is not a JPEG or PNG image",
        ),
        (upload("broken.jpg", image_bytes()[:200]), b"damaged or truncated"),
    ],
)
def test_bad_files_are_form_errors_and_keep_everything_else(clin_client, bad, message):
    response = clin_client.post(reverse("case_create"), case_post(images=[upload("good.jpg", seed=5), bad]))
    assert response.status_code == 400
    assert message in response.content
    assert not Case.objects.exists() and not Patient.objects.exists()
    body = response.content.decode()
    assert 'value="PT-100"' in body and "Changed colour in 3 months." in body
    assert 'value="left scapula"' in body and '<option value="torso" selected>' in body
    # The valid image is kept so the clinician does not have to choose it again.
    assert body.count('name="kept_images"') == 1
    assert "Traceback" not in body


def test_an_oversized_file_is_a_form_error(clin_client, settings):
    settings.TELEDER_MAX_IMAGE_BYTES = 2000
    response = clin_client.post(
        reverse("case_create"), case_post(images=[upload("big.jpg", width=400, height=300)])
    )
    assert response.status_code == 413  # as the API answers an oversized file
    assert b"The file is larger than 0.00191 MB. (big.jpg)" in response.content
    assert not Case.objects.exists()


def test_missing_required_fields_are_form_errors_and_images_are_kept(clin_client, clinician):
    response = clin_client.post(reverse("case_create"), case_post(new_patient_reference="", priority=""))
    assert response.status_code == 400
    body = response.content.decode()
    assert "Choose a patient or give a reference for a new one." in body
    assert "This field is required." in body
    tokens = [part.split('"')[0] for part in body.split('name="kept_images" value="')[1:]]
    assert len(tokens) == 2
    # Resubmitting with the kept images (and no new upload) makes the case with both.
    data = case_post(priority="urgent", images=[])
    data["kept_images"] = tokens
    response = clin_client.post(reverse("case_create"), data)
    assert response.status_code == 302
    case = Case.objects.get(submitted_by=clinician)
    assert case.images.count() == 2 and case.priority == "urgent"


def test_no_images_is_a_form_error(clin_client):
    response = clin_client.post(reverse("case_create"), case_post(images=[]))
    assert response.status_code == 400
    assert b"Add at least one image." in response.content
    assert not Patient.objects.exists()


def test_more_than_ten_images_is_a_form_error(clin_client):
    images = [upload(f"{i}.jpg", seed=i) for i in range(11)]
    response = clin_client.post(reverse("case_create"), case_post(images=images))
    assert response.status_code == 400
    assert b"at most 10 images" in response.content


def test_kept_images_of_another_user_cannot_be_used(client, clinician, other_clinician):
    client.force_login(other_clinician)
    body = client.post(reverse("case_create"), case_post(new_patient_reference="")).content.decode()
    tokens = [part.split('"')[0] for part in body.split('name="kept_images" value="')[1:]]
    assert tokens
    client.force_login(clinician)
    data = case_post(images=[])
    data["kept_images"] = tokens
    response = client.post(reverse("case_create"), data)
    # Another user's tokens open nothing: refused like expired ones, never used.
    assert response.status_code == 400 and b"no longer stored; add them again" in response.content


def test_a_lesion_of_another_patient_is_refused(clin_client, patient, lesion, org, clinician):
    other = services.patient_create(actor=clinician, organization=org, reference="OTHER")
    response = clin_client.post(reverse("case_create"), case_post(patient=other.pk, lesion=lesion.pk))
    assert response.status_code == 400
    assert b"This lesion belongs to another patient." in response.content
    assert Lesion.objects.count() == 1


def test_dermatologists_cannot_submit_cases(client, dermatologist):
    client.force_login(dermatologist)
    assert client.get(reverse("case_create")).status_code == 403


# Case pages ---------------------------------------------------------------------------------------------


def test_case_list_and_detail(clin_client, make_case):
    case = make_case(2)
    listing = clin_client.get(reverse("case_list")).content
    assert f"Case {case.pk}".encode() in listing
    detail = clin_client.get(reverse("case_detail", args=[case.pk]))
    assert detail.status_code == 200
    assert detail.content.count(b'class="image-card"') == 2
    assert reverse("case_status", args=[case.pk]).encode() in detail.content


def test_status_json_follows_the_analysis(clin_client, make_case, record_analysis, registered_model):
    case = make_case(2)
    data = clin_client.get(reverse("case_status", args=[case.pk])).json()
    assert data["status"] == "submitted" and data["final"] is False
    assert [image["probability"] for image in data["images"]] == [None, None]
    assert data["review"] is None and data["reports"] == []
    record_analysis(case, [0.2, 0.9])
    data = clin_client.get(reverse("case_status", args=[case.pk])).json()
    assert data["status"] == "awaiting_review"
    assert [image["risk_band"] for image in data["images"]] == ["low", "high"]
    assert data["images"][1]["model_version"] == str(registered_model)
    assert data["risk_band"] == "high" and data["risk"] == pytest.approx(0.9)
    assert "p = 0.900" in data["html"]


def test_image_is_served_to_its_organization_and_the_read_is_audited(clin_client, clinician, make_case):
    case = make_case(1)
    image = case.images.get()
    response = clin_client.get(reverse("case_image", args=[case.pk, image.pk]))
    assert response.status_code == 200
    assert response["Content-Type"] == "image/jpeg"
    assert b"".join(response.streaming_content)[:3] == b"\xff\xd8\xff"
    assert AuditEvent.objects.filter(actor=clinician, action="image.view", object_id=str(image.pk)).exists()


def test_an_image_of_another_case_is_a_404(clin_client, make_case):
    first, second = make_case(1), make_case(1, submission_key="second")
    image = second.images.get()
    assert clin_client.get(reverse("case_image", args=[first.pk, image.pk])).status_code == 404
