"""Every object endpoint answers 404 for another organization's ids; roles gate whole endpoints (403)."""

import uuid

import pytest

from cases.models import Case, Lesion, Patient
from tests.cases.api.test_auth import assert_error
from tests.support.images import upload


@pytest.fixture
def other_case(other_clinician, other_lesion, make_case):
    return make_case(actor=other_clinician, lesion_=other_lesion)


@pytest.mark.parametrize(
    "method,path",
    [
        ("get", "/api/v1/cases/{case}/"),
        ("get", "/api/v1/cases/{case}/status/"),
        ("post", "/api/v1/cases/{case}/images/"),
        ("post", "/api/v1/cases/{case}/reviews/"),
        ("get", "/api/v1/patients/{patient}/"),
        ("get", "/api/v1/lesions/{lesion}/"),
    ],
)
@pytest.mark.parametrize("who", ["clinician", "dermatologist"])
def test_other_organizations_objects_are_404(client_for, request, other_case, method, path, who):
    client = client_for(request.getfixturevalue(who))
    url = path.format(case=other_case.pk, patient=other_case.lesion.patient_id, lesion=other_case.lesion_id)
    if method == "post" and url.endswith("images/"):
        response = client.post(url, {"images": [upload(seed=5)]}, format="multipart")
    elif method == "post":
        response = client.post(
            url, {"diagnosis": "nv", "malignant": False, "management": "reassure"}, format="json"
        )
    else:
        response = client.get(url)
    assert_error(response, 404, "not_found")
    # A made-up id answers exactly the same, so ids do not leak existence.
    missing = client.get(path.format(case=999999, patient=999999, lesion=999999)) if method == "get" else None
    if missing is not None:
        assert missing.status_code == 404 and missing.json() == response.json()


def test_lists_hold_only_the_users_organizations(client_for, clinician, make_case, other_case):
    mine = make_case()
    client = client_for(clinician)
    assert [c["id"] for c in client.get("/api/v1/cases/").json()["results"]] == [mine.pk]
    assert [p["id"] for p in client.get("/api/v1/patients/").json()["results"]] == [mine.lesion.patient_id]
    assert [x["id"] for x in client.get("/api/v1/lesions/").json()["results"]] == [mine.lesion_id]
    assert [o["slug"] for o in client.get("/api/v1/organizations/").json()["results"]] == ["north"]
    # Filtering by another organization's ids finds nothing rather than leaking.
    assert client.get("/api/v1/cases/", {"organization": other_case.organization_id}).json()["count"] == 0


def test_cannot_submit_for_another_organizations_lesion(client_for, clinician, other_lesion):
    response = client_for(clinician).post(
        "/api/v1/cases/", {"lesion": other_lesion.pk, "images": [upload()]}, format="multipart"
    )
    error = assert_error(response, 404, "not_found")
    assert "lesion" in error["fields"]
    assert Case.objects.count() == 0


def test_cannot_add_a_lesion_to_another_organizations_patient(client_for, clinician, other_lesion):
    response = client_for(clinician).post(
        "/api/v1/lesions/", {"patient": other_lesion.patient_id, "site": "torso"}, format="json"
    )
    assert_error(response, 404, "not_found")
    assert Lesion.objects.count() == 1


def test_cannot_create_a_patient_in_another_organization(client_for, clinician, other_org):
    response = client_for(clinician).post(
        "/api/v1/patients/", {"organization": other_org.pk, "reference": "X-1"}, format="json"
    )
    assert_error(response, 404, "not_found")
    assert not Patient.objects.filter(reference="X-1").exists()


def test_patients_and_lesions_are_created_for_the_users_organization(client_for, clinician, org):
    client = client_for(clinician)
    response = client.post(
        "/api/v1/patients/", {"reference": "P-77", "sex": "male", "year_of_birth": 1960}, format="json"
    )
    assert response.status_code == 201, response.content
    assert response.json()["organization"] == org.pk
    duplicate = client.post("/api/v1/patients/", {"reference": "p-77"}, format="json")
    assert "reference" in assert_error(duplicate, 400)["fields"]
    lesion = client.post(
        "/api/v1/lesions/",
        {"patient": response.json()["id"], "site": "head/neck", "label": "nose"},
        format="json",
    )
    assert lesion.status_code == 201 and lesion.json()["site"] == "head/neck"
    assert (
        "site"
        in assert_error(
            client.post(
                "/api/v1/lesions/", {"patient": response.json()["id"], "site": "elbow"}, format="json"
            ),
            400,
        )["fields"]
    )


def test_dermatologists_cannot_create_patients(client_for, dermatologist):
    response = client_for(dermatologist).post("/api/v1/patients/", {"reference": "D-1"}, format="json")
    assert_error(response, 403, "forbidden")


def test_the_queue_is_for_dermatologists(client_for, clinician):
    assert_error(client_for(clinician).get("/api/v1/queue/"), 403, "forbidden")


def test_another_organizations_report_is_404(client_for, clinician):
    client = client_for(clinician)
    assert_error(client.get(f"/api/v1/reports/{uuid.uuid4()}/download/"), 404)
    assert_error(client.get(f"/api/v1/reports/{uuid.uuid4()}/"), 404)


def test_model_versions_are_read_only_for_non_admins(client_for, clinician, dermatologist, model_version):
    for user in (clinician, dermatologist):
        client = client_for(user)
        listed = client.get("/api/v1/model-versions/").json()["results"]
        assert [m["id"] for m in listed] == [model_version.pk]
        assert listed[0]["members"] == ["member0", "member1"]
        assert client.get(f"/api/v1/model-versions/{model_version.pk}/").status_code == 200
        assert_error(client.post(f"/api/v1/model-versions/{model_version.pk}/activate/"), 403, "forbidden")
        assert_error(client.post("/api/v1/model-versions/", {}, format="json"), 403)
    assert_error(client_for(clinician).get("/api/v1/model-versions/999999/"), 404)


def test_wrong_method_is_405_in_the_error_format(client_for, clinician):
    assert_error(client_for(clinician).delete("/api/v1/cases/"), 405, "method_not_allowed")


def test_administrators_activate_a_model_version(client_for, platform_admin, settings, tmp_path):
    from inference.models import ModelStatus
    from inference.registry import model_activate, model_register
    from tests.support.onnx_models import build_package

    settings.TELEDER_MODEL_DIR = tmp_path / "models"
    old = model_register(build_package(tmp_path / "v1", version="1.0.0"))
    model_activate(name=old.name, version=old.version)
    new = model_register(build_package(tmp_path / "v2", version="2.0.0"))
    response = client_for(platform_admin).post(f"/api/v1/model-versions/{new.pk}/activate/")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "active" and response.json()["version"] == "2.0.0"
    old.refresh_from_db()
    assert old.status != ModelStatus.ACTIVE
