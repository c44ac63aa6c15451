"""FHIR R4 results: the case Bundle and the DiagnosticReport search, through the API, validated and
round-tripped with the fhir.resources R4 models."""

import base64
import hashlib
import json

import pytest
from fhir.resources.R4B.bundle import Bundle

from cases.models import AuditEvent, Prediction
from interop import codes
from tests.interop.conftest import review_and_report

pytestmark = pytest.mark.django_db
SNOMED = "http://snomed.info/sct"


def fetch_bundle(client, case) -> dict:
    response = client.get(f"/api/v1/cases/{case.pk}/fhir")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("application/fhir+json")
    return json.loads(response.content)


def resources(bundle: dict, kind: str) -> list[dict]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


def references(node) -> list[str]:
    if isinstance(node, dict):
        found = [node["reference"]] if isinstance(node.get("reference"), str) else []
        return found + [r for value in node.values() for r in references(value)]
    if isinstance(node, list):
        return [r for item in node for r in references(item)]
    return []


def test_case_bundle_validates_round_trips_and_resolves(client_for, clinician, reported_case):
    bundle = fetch_bundle(client_for(clinician), reported_case)
    parsed = Bundle.model_validate(bundle)  # every resource validates against the R4 models
    again = json.loads(parsed.model_dump_json(exclude_none=True))
    assert again == bundle  # round trip: parse and serialise give back the same JSON
    assert Bundle.model_validate_json(json.dumps(bundle)).model_dump(exclude_none=True) == parsed.model_dump(
        exclude_none=True
    )
    assert bundle["type"] == "collection"
    kinds = {e["resource"]["resourceType"] for e in bundle["entry"]}
    assert kinds == {
        "DiagnosticReport",
        "Patient",
        "Practitioner",
        "ServiceRequest",
        "BodyStructure",
        "Media",
        "Observation",
        "Device",
    }
    full_urls = {e["fullUrl"] for e in bundle["entry"]}
    assert all(e["fullUrl"] == f"urn:uuid:{e['resource']['id']}" for e in bundle["entry"])
    assert set(references(bundle)) <= full_urls  # every reference resolves inside the Bundle


def test_diagnostic_report_content(client_for, clinician, dermatologist, reported_case):
    bundle = fetch_bundle(client_for(clinician), reported_case)
    (report,) = resources(bundle, "DiagnosticReport")
    stored = reported_case.reports.get()
    assert report["status"] == "final"
    assert {"system": "http://loinc.org", "code": "34758-3", "display": "Dermatology Consult note"} in report[
        "code"
    ]["coding"]
    assert report["conclusionCode"][0]["coding"][0] == {
        "system": SNOMED,
        "code": "372244006",
        "display": "Malignant melanoma",
    }
    assert "Melanoma (malignant)" in report["conclusion"] and "blue-white veil" in report["conclusion"]
    form = report["presentedForm"][0]
    with stored.file.open("rb") as handle:
        pdf = handle.read()
    assert base64.b64decode(form["data"]) == pdf
    assert form["contentType"] == "application/pdf" and form["size"] == len(pdf)
    assert base64.b64decode(form["hash"]) == hashlib.sha1(pdf).digest()  # noqa: S324 - FHIR's SHA-1
    assert form["url"].endswith(f"/api/v1/reports/{stored.uid}/download/")
    assert {"system": codes.REPORT_IDENTIFIER_SYSTEM, "value": str(stored.uid)} in report["identifier"]
    (patient,) = resources(bundle, "Patient")
    assert "name" not in patient and "telecom" not in patient and "address" not in patient
    assert patient["identifier"][0]["value"] == reported_case.lesion.patient.reference
    assert patient["gender"] == "female" and patient["birthDate"] == "1970"
    names = {p["name"][0]["text"] for p in resources(bundle, "Practitioner")}
    assert names == {stored.signer_name, reported_case.submitted_by.display_name}
    (request,) = resources(bundle, "ServiceRequest")
    assert request["priority"] == "urgent" and request["note"][0]["text"].startswith("Changing lesion")
    assert request["requester"]["reference"] in {
        f"urn:uuid:{p['id']}" for p in resources(bundle, "Practitioner")
    }
    (body,) = resources(bundle, "BodyStructure")
    assert body["location"]["coding"][0] == {"system": SNOMED, "code": "22943007", "display": "Trunk"}
    assert body["locationQualifier"][0]["coding"][0]["code"] == "7771000"  # "left shoulder": left
    media = resources(bundle, "Media")
    assert [m["content"]["title"] for m in media] == [f"Image {i} of case {reported_case.pk}" for i in (1, 2)]
    assert all(m["modality"]["coding"][0]["code"] == "DMS" for m in media)


def test_ai_risk_observation(client_for, clinician, reported_case):
    bundle = fetch_bundle(client_for(clinician), reported_case)
    (risk,) = resources(bundle, "Observation")
    assert risk["valueQuantity"]["value"] == pytest.approx(0.82)
    assert risk["interpretation"][0]["coding"][0]["code"] == "high"
    assert risk["method"]["text"] == "test-ensemble 1.0.0"
    (device,) = resources(bundle, "Device")
    assert risk["device"]["reference"] == f"urn:uuid:{device['id']}"
    assert device["version"][0]["value"] == "1.0.0"
    assert len(risk["derivedFrom"]) == 2


def test_differential_observations_when_the_model_gives_one(client_for, clinician, reported_case):
    probabilities = {
        "akiec": 0.02,
        "bcc": 0.05,
        "bkl": 0.08,
        "df": 0.01,
        "mel": 0.7,
        "nv": 0.12,
        "vasc": 0.02,
    }
    Prediction.objects.filter(image__case=reported_case).update(class_probabilities=probabilities)
    bundle = fetch_bundle(client_for(clinician), reported_case)
    Bundle.model_validate(bundle)
    differential = [
        o for o in resources(bundle, "Observation") if o["code"]["coding"][0]["code"] != "malignancy-risk"
    ]
    assert len(differential) == 2 * 7
    melanoma = [o for o in differential if o["component"][0]["valueCodeableConcept"]["text"] == "Melanoma"]
    assert len(melanoma) == 2 and all(o["valueQuantity"]["value"] == 0.7 for o in melanoma)
    assert {"system": SNOMED, "code": "372244006", "display": "Malignant melanoma"} in melanoma[0][
        "component"
    ][0]["valueCodeableConcept"]["coding"]
    (report,) = resources(bundle, "DiagnosticReport")
    assert len(report["result"]) == 1 + 14


def test_addendum_amends_the_same_report(client_for, clinician, dermatologist, reported_case):
    client = client_for(clinician)
    first = fetch_bundle(client, reported_case)
    review_and_report(
        reported_case,
        dermatologist,
        diagnosis="nv",
        malignant=False,
        management="reassure",
        notes="",
        reason="Histology: compound naevus, no atypia.",
    )
    second = fetch_bundle(client, reported_case)
    (before,) = resources(first, "DiagnosticReport")
    (after,) = resources(second, "DiagnosticReport")
    assert after["id"] == before["id"] and after["status"] == "amended" and after["meta"]["versionId"] == "2"
    uids = [i["value"] for i in after["identifier"] if i["system"] == codes.REPORT_IDENTIFIER_SYSTEM]
    assert uids == [str(r.uid) for r in reported_case.reports.order_by("-created_at")]
    assert after["conclusionCode"][0]["coding"][0]["code"] == "400096001"


def test_same_case_same_ids(client_for, clinician, reported_case):
    client = client_for(clinician)
    ids = [[e["fullUrl"] for e in fetch_bundle(client, reported_case)["entry"]] for _ in range(2)]
    assert ids[0] == ids[1]


def test_export_is_audited(client_for, clinician, reported_case):
    fetch_bundle(client_for(clinician), reported_case)
    assert AuditEvent.objects.filter(action="case.fhir_export", object_id=str(reported_case.pk)).count() == 1


def test_unreported_case_is_a_conflict(client_for, clinician, analysed_case):
    response = client_for(clinician).get(f"/api/v1/cases/{analysed_case.pk}/fhir")
    assert response.status_code == 409
    assert "no signed report" in response.json()["error"]["message"]


def test_other_organization_gets_404(client_for, other_clinician, other_dermatologist, reported_case):
    for user in (other_clinician, other_dermatologist):
        response = client_for(user).get(f"/api/v1/cases/{reported_case.pk}/fhir")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"


def test_anonymous_gets_401(api_client, reported_case):
    assert api_client.get(f"/api/v1/cases/{reported_case.pk}/fhir").status_code == 401
    assert api_client.get("/api/v1/fhir/DiagnosticReport?patient=1").status_code == 401


def test_search_by_patient(client_for, clinician, dermatologist, reported_case, analysed_case):
    patient = reported_case.lesion.patient
    client = client_for(dermatologist)
    for value in (str(patient.pk), f"Patient/{patient.pk}"):
        response = client.get("/api/v1/fhir/DiagnosticReport", {"patient": value})
        assert response.status_code == 200, response.content
        bundle = json.loads(response.content)
        Bundle.model_validate(bundle)
        assert bundle["type"] == "searchset" and bundle["total"] == 1
        matches = [e for e in bundle["entry"] if e["search"]["mode"] == "match"]
        assert [m["resource"]["resourceType"] for m in matches] == ["DiagnosticReport"]
        assert "data" not in matches[0]["resource"]["presentedForm"][0]
        included = {e["fullUrl"] for e in bundle["entry"]}
        assert set(references(bundle)) <= included


def test_search_refuses_bad_and_foreign_patients(client_for, clinician, other_clinician, reported_case):
    patient = reported_case.lesion.patient
    foreign = client_for(other_clinician).get("/api/v1/fhir/DiagnosticReport", {"patient": patient.pk})
    assert foreign.status_code == 404
    client = client_for(clinician)
    for bad in ("abc", "Patient/x", "0", ""):
        response = client.get("/api/v1/fhir/DiagnosticReport", {"patient": bad})
        assert response.status_code == 400, bad
        assert "patient" in response.json()["error"]["fields"]
    assert client.get("/api/v1/fhir/DiagnosticReport").status_code == 400


@pytest.mark.parametrize(
    ("diagnosis", "malignant", "code"),
    [
        ("mel", True, "372244006"),
        ("nv", False, "400096001"),
        ("bcc", True, "254701007"),
        ("akiec", False, "201101007"),
        ("akiec", True, "254656002"),
        ("vasc", False, "400210000"),
        ("bkl", False, None),
        ("df", False, None),
        ("other", True, None),
    ],
)
def test_diagnosis_mapping(diagnosis, malignant, code):
    from interop.fhir import diagnosis_codeable

    concept = diagnosis_codeable(diagnosis, malignant=malignant)
    snomed = [c["code"] for c in concept["coding"] if c["system"] == SNOMED]
    assert snomed == ([code] if code else [])
    assert {"system": codes.DIAGNOSIS_SYSTEM, "code": diagnosis} | {} == {
        k: v for k, v in concept["coding"][-1].items() if k != "display"
    }


@pytest.mark.parametrize(
    ("label", "side"),
    [
        ("left shoulder", "L"),
        ("Right forearm, dorsal", "R"),
        ("between left and right scapula", None),
        ("", None),
    ],
)
def test_laterality_from_label(label, side):
    assert codes.laterality_from_label(label) == side


def test_every_stored_site_and_diagnosis_is_mapped():
    from cases.vocabulary import Diagnosis, Site

    assert set(codes.SITE_SNOMED) == set(Site.values)
    assert set(codes.DIAGNOSIS_SNOMED) == set(Diagnosis.values)


def test_runtime_validation_when_switched_on(settings, client_for, clinician, reported_case):
    settings.TELEDER_FHIR_VALIDATE = True
    bundle = fetch_bundle(client_for(clinician), reported_case)
    assert Bundle.model_validate(bundle).type == "collection"


def test_json_is_accepted_too(client_for, clinician, reported_case):
    response = client_for(clinician).get(
        f"/api/v1/cases/{reported_case.pk}/fhir", HTTP_ACCEPT="application/json"
    )
    assert response.status_code == 200 and response["Content-Type"].startswith("application/json")
    assert response.json()["resourceType"] == "Bundle"


def test_a_binary_models_class_pair_is_no_differential(client_for, clinician, reported_case):
    Prediction.objects.filter(image__case=reported_case).update(
        class_probabilities={"benign": 0.18, "malignant": 0.82}
    )
    bundle = fetch_bundle(client_for(clinician), reported_case)
    assert len(resources(bundle, "Observation")) == 1


def test_search_for_a_patient_without_reports_is_empty(client_for, clinician, analysed_case):
    patient = analysed_case.lesion.patient
    response = client_for(clinician).get("/api/v1/fhir/DiagnosticReport", {"patient": patient.pk})
    assert response.status_code == 200
    bundle = json.loads(response.content)
    assert bundle["total"] == 0 and "entry" not in bundle  # FHIR JSON has no empty arrays
    Bundle.model_validate(bundle)
    missing = client_for(clinician).get("/api/v1/fhir/DiagnosticReport", {"patient": 10**12})
    assert missing.status_code == 404


def test_no_empty_values_anywhere(client_for, clinician, reported_case):
    def check(node, path="$"):
        assert node not in ([], {}, "", None), path
        if isinstance(node, dict):
            for key, value in node.items():
                check(value, f"{path}.{key}")
        elif isinstance(node, list):
            for index, value in enumerate(node):
                check(value, f"{path}[{index}]")

    check(fetch_bundle(client_for(clinician), reported_case))
