"""The whole mobile flow through the API: log in, register a patient and lesion, submit a case with images,
poll, get the real ONNX ensemble's result, the dermatologist reviews from the queue, the signed report is
downloaded and verified, and logging out ends the session."""

import uuid

import pytest

from cases.reports import signing
from cases.reports.tasks import generate_report
from inference.registry import model_activate, model_register
from inference.tasks import analyse_case
from tests.cases.api.conftest import login
from tests.support.images import upload
from tests.support.onnx_models import build_package


@pytest.fixture
def active_model(db, settings, tmp_path):
    settings.TELEDER_MODEL_DIR = tmp_path / "models"
    settings.TELEDER_BUNDLED_MODEL = tmp_path / "no-bundled-model"
    version = model_register(build_package(tmp_path / "package"))
    return model_activate(name=version.name, version=version.version)


@pytest.fixture
def signing_ca(settings, tmp_path):
    settings.TELEDER_SIGNING_DIR = tmp_path / "signing"
    settings.TELEDER_SIGNING_PASSPHRASE = ""
    return signing.ca_init()


def test_mobile_flow_from_login_to_verified_report(
    api_client, clinician, dermatologist, active_model, signing_ca
):
    app = api_client
    tokens = login(app, "clin")
    app.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['access']}")
    assert app.get("/api/v1/me/").json()["role"] == "clinician"

    patient = app.post(
        "/api/v1/patients/", {"reference": "MOB-1", "sex": "female", "year_of_birth": 1980}, format="json"
    )
    lesion = app.post("/api/v1/lesions/", {"patient": patient.json()["id"], "site": "torso"}, format="json")
    key = str(uuid.uuid4())
    images = [
        upload("a.jpg", seed=1, width=80, height=60),
        upload("b.png", fmt="PNG", seed=2, content_type="image/png"),
    ]
    submitted = app.post(
        "/api/v1/cases/",
        {"lesion": lesion.json()["id"], "images": images, "clinical_notes": "Itchy", "priority": "urgent"},
        format="multipart",
        HTTP_IDEMPOTENCY_KEY=key,
    )
    assert submitted.status_code == 201, submitted.content
    case_id = submitted.json()["id"]
    assert app.get(f"/api/v1/cases/{case_id}/status/").json()["status"] == "submitted"

    analyse_case.apply(args=[case_id])  # what the inference worker runs for the queued message

    status = app.get(f"/api/v1/cases/{case_id}/status/").json()
    assert status["status"] == "awaiting_review" and status["risk_band"] in ("low", "medium", "high")
    case = app.get(f"/api/v1/cases/{case_id}/").json()
    assert case["model_version"]["id"] == active_model.pk
    for image in case["images"]:
        prediction = image["predictions"][0]
        assert set(prediction["member_probabilities"]) == {"member0", "member1"}
        assert 0.0 <= prediction["probability"] <= 1.0
    assert case["risk"] == pytest.approx(max(i["predictions"][0]["probability"] for i in case["images"]))

    derm = type(app)()
    derm.credentials(HTTP_AUTHORIZATION=f"Bearer {login(derm, 'derm')['access']}")
    assert [c["id"] for c in derm.get("/api/v1/queue/").json()["results"]] == [case_id]
    review = derm.post(
        f"/api/v1/cases/{case_id}/reviews/",
        {"diagnosis": "mel", "malignant": True, "management": "biopsy", "notes": "Excise."},
        format="json",
    )
    assert review.status_code == 201, review.content
    # Reviewed is not done: the report is still being signed.
    status = app.get(f"/api/v1/cases/{case_id}/status/").json()
    assert status["status"] == "reviewed" and status["done"] is False
    assert status["report"] == {"id": None, "url": None, "state": "generating"}
    generate_report.apply(args=[review.json()["id"]])  # what the default-queue worker runs

    status = app.get(f"/api/v1/cases/{case_id}/status/").json()
    assert status["status"] == "reported" and status["done"] is True
    assert status["report"]["state"] == "available"
    reports = app.get(f"/api/v1/cases/{case_id}/").json()["reports"]
    assert len(reports) == 1
    assert (
        status["report"]["id"] == reports[0]["uid"] and status["report"]["url"] == reports[0]["download_url"]
    )
    listed = app.get("/api/v1/cases/").json()["results"]
    assert [c["report"] for c in listed if c["id"] == case_id] == [status["report"]]
    pdf = app.get(reports[0]["download_url"])
    assert pdf.status_code == 200 and pdf["Content-Type"] == "application/pdf"
    content = b"".join(pdf.streaming_content) if pdf.streaming else pdf.content
    assert content.startswith(b"%PDF-")
    verified = app.post(
        "/api/v1/reports/verify/", {"file": upload("r.pdf", content, "application/pdf")}, format="multipart"
    )
    assert verified.status_code == 200, verified.content
    assert verified.json()["valid"] is True and verified.json()["report_uid"] == reports[0]["uid"]
    tampered = content.replace(b"Excise", b"Ignore") if b"Excise" in content else content[:-200] + b"0" * 200
    assert (
        app.post(
            "/api/v1/reports/verify/",
            {"file": upload("t.pdf", tampered, "application/pdf")},
            format="multipart",
        ).json()["valid"]
        is False
    )

    # The retry of the original submission still points at the same case.
    again = app.post(
        "/api/v1/cases/",
        {"lesion": lesion.json()["id"], "images": [upload("a.jpg", seed=1)]},
        format="multipart",
        HTTP_IDEMPOTENCY_KEY=key,
    )
    assert again.status_code == 200 and again.json()["id"] == case_id

    assert app.post("/api/v1/auth/logout/", {"refresh": tokens["refresh"]}, format="json").status_code == 200
    assert app.get(f"/api/v1/cases/{case_id}/").status_code == 401


def test_verify_rejects_what_is_not_a_pdf(client_for, clinician):
    client = client_for(clinician)
    response = client.post(
        "/api/v1/reports/verify/", {"file": upload("x.pdf", b"hello", "application/pdf")}, format="multipart"
    )
    assert response.status_code == 400 and "file" in response.json()["error"]["fields"]
    empty = client.post(
        "/api/v1/reports/verify/", {"file": upload("x.pdf", b"", "application/pdf")}, format="multipart"
    )
    assert empty.status_code == 400
