"""The report pages: download with permission and audit, public verification, CA certificate."""

import pytest
from cryptography import x509
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from cases.models import AuditEvent
from tests.cases.reports.helpers import stored_bytes
from tests.support.images import image_bytes


def _download(client, report):
    return client.get(reverse("report_download", kwargs={"uid": report.uid}))


def test_clinician_of_the_case_downloads_the_signed_pdf_and_it_is_audited(client, report, clinician):
    client.force_login(clinician)
    response = _download(client, report)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert f"teleder-report-{report.uid}.pdf" in response["Content-Disposition"]
    assert response.content == stored_bytes(report)
    assert response["X-Report-SHA256"] == report.sha256
    _download(client, report)
    events = AuditEvent.objects.filter(action="report.download", object_id=str(report.pk), actor=clinician)
    assert events.count() == 2 and events.first().organization_id == report.case.organization_id


def test_dermatologist_and_admin_may_download(client, report, dermatologist, platform_admin):
    for user in (dermatologist, platform_admin):
        client.force_login(user)
        assert _download(client, report).status_code == 200


def test_other_organization_gets_404_and_nothing_is_audited(client, report, other_clinician):
    client.force_login(other_clinician)
    response = _download(client, report)
    assert response.status_code == 404 and b"%PDF" not in response.content
    assert not AuditEvent.objects.filter(action="report.download").exists()


def test_anonymous_download_goes_to_login(client, report):
    response = _download(client, report)
    assert response.status_code == 302 and reverse("login") in response["Location"]


def test_a_tampered_stored_file_is_withheld(client, report, clinician, settings):
    path = settings.MEDIA_ROOT / report.file.name
    data = bytearray(path.read_bytes())
    data[500] ^= 0x01
    path.write_bytes(bytes(data))
    client.force_login(clinician)
    response = _download(client, report)
    assert response.status_code == 503 and b"integrity" in response.content


def _verify(client, content: bytes | None, name: str = "report.pdf", content_type: str = "application/pdf"):
    data = {} if content is None else {"file": SimpleUploadedFile(name, content, content_type)}
    return client.post(reverse("report_verify"), data)


def test_verify_page_accepts_the_stored_report(client, report):
    assert client.get(reverse("report_verify")).status_code == 200
    response = _verify(client, stored_bytes(report))
    assert response.status_code == 200
    page = response.content.decode()
    assert "Valid report" in page and report.signer_name in page and str(report.uid) in page


def test_verify_page_rejects_a_modified_report(client, report):
    data = bytearray(stored_bytes(report))
    data[data.index(b"stream") + 30] ^= 0x01
    response = _verify(client, bytes(data))
    assert response.status_code == 200
    assert "Not a valid report" in response.content.decode() and "altered" in response.content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("content", "status", "text"),
    [
        (b"", 400, "empty"),
        (image_bytes(), 400, "not a PDF"),
        (b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n", 200, "cannot be read"),
        (None, 400, "Choose the report PDF"),
    ],
)
def test_verify_page_answers_bad_uploads_clearly(client, content, status, text):
    response = _verify(client, content)
    assert response.status_code == status
    assert text in response.content.decode()


@pytest.mark.django_db
def test_verify_page_refuses_a_huge_upload(client, settings):
    settings.TELEDER_REPORT_VERIFY_MAX_BYTES = 1024 * 1024
    response = _verify(client, b"%PDF-1.7\n" + b"0" * (3 * 1024 * 1024))
    assert response.status_code == 413 and "larger than 1 MB" in response.content.decode()


@pytest.mark.django_db
def test_verify_page_refuses_an_upload_just_over_the_limit(client, settings):
    settings.TELEDER_REPORT_VERIFY_MAX_BYTES = 1024 * 1024
    response = _verify(client, b"%PDF-1.7\n" + b"0" * (1024 * 1024))
    assert response.status_code == 413


def test_verification_link_shows_the_report_on_record_without_patient_data(client, report):
    response = client.get(reverse("report_verify"), {"report": str(report.uid)})
    page = response.content.decode()
    assert response.status_code == 200 and "on record" in page and report.signer_name in page
    assert report.case.lesion.patient.reference not in page


@pytest.mark.django_db
@pytest.mark.parametrize("uid", ["00000000-0000-4000-8000-000000000000", "not-a-uuid", "x" * 500])
def test_verification_link_for_an_unknown_report(client, uid):
    response = client.get(reverse("report_verify"), {"report": uid})
    assert response.status_code == 200 and "No report with this ID" in response.content.decode()


def test_ca_certificate_is_downloadable(client, signing_ca):
    response = client.get(reverse("report_ca"))
    assert response.status_code == 200
    cert = x509.load_pem_x509_certificate(response.content)
    assert cert.fingerprint(cert.signature_hash_algorithm).hex(":").upper() == signing_ca.fingerprint_sha256


@pytest.mark.django_db
def test_ca_certificate_before_the_ca_exists_is_404(client):
    assert client.get(reverse("report_ca")).status_code == 404


def test_verify_page_shows_a_superseded_report_in_amber(client, report, dermatologist):
    from cases import services
    from cases.reports.services import report_generate

    original = stored_bytes(report)
    correction = services.review_correct(
        actor=dermatologist,
        case=report.case,
        reason="Histology: basal cell carcinoma.",
        diagnosis="bcc",
        malignant=None,
        management="biopsy",
    )
    addendum = report_generate(review_id=correction.pk)
    page = _verify(client, original).content.decode()
    assert f"Valid, superseded by addendum {addendum.uid}" in page
    assert "verify-superseded" in page and "Valid report" not in page
    current = _verify(client, stored_bytes(addendum)).content.decode()
    assert "Valid report" in current and "verify-superseded" not in current
