"""Rendering, signing, storing once, addenda and verification of generated reports."""

import hashlib
import io
import random
import re
import shutil
import subprocess

import pytest
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pypdf import PdfReader

from cases import services
from cases.models import AuditEvent, CaseStatus, Report, Review
from cases.reports import verify
from cases.reports.render import ReportContent, render_report_pdf, wrappable
from cases.reports.services import report_generate
from tests.cases.reports.helpers import pdf_text, stored_bytes


def test_report_is_rendered_signed_stored_and_valid(report, review, dermatologist):
    data = stored_bytes(report)
    assert hashlib.sha256(data).hexdigest() == report.sha256
    assert report.file.name == f"reports/{report.case_id}/{report.uid}.pdf"
    assert report.signer == dermatologist and report.signer_name == dermatologist.display_name
    report.case.refresh_from_db()
    assert report.case.status == CaseStatus.REPORTED and report.case.report_error == ""
    assert AuditEvent.objects.filter(action="report.create", object_id=str(report.pk)).count() == 1

    text = pdf_text(data)
    for expected in (
        "North Clinic",
        str(report.uid),
        review.case.lesion.patient.reference,
        "Torso",
        "Melanoma",
        "Biopsy / excision",
        "blue-white veil",
        "Changing lesion",
    ):
        assert expected in text, expected
    # The AI said malignant (0.82 >= threshold 0.5) and so did the dermatologist.
    assert (
        review.agrees_with_ai and "The AI flagged this lesion; the dermatologist confirmed malignancy" in text
    )
    assert "decision support" in text
    assert "0.82" in text and "0.35" in text and "test-ensemble 1.0.0" in text
    assert dermatologist.display_name in text
    assert f"/reports/verify/?report={report.uid}" in re.sub(r"\s+", "", text)

    result = verify.verify_report_pdf(data)
    assert result.valid and result.status == verify.VALID
    assert result.intact and result.trusted and result.matches_stored
    assert result.signer_name == dermatologist.display_name
    assert result.report_uid == str(report.uid) and result.case_id == report.case_id
    assert result.signed_at is not None and abs((result.signed_at - report.signed_at).total_seconds()) < 1
    assert "TeleDerm" in result.certificate_subject


def test_signature_is_pades_and_names_the_reason(report):
    data = stored_bytes(report)
    assert b"/ETSI.CAdES.detached" in data
    result = verify.verify_report_pdf(data)
    assert f"case {report.case_id}" in result.reason


@pytest.mark.skipif(
    not (shutil.which("pdftoppm") and shutil.which("zbarimg")), reason="needs poppler and zbar"
)
def test_qr_code_decodes_to_the_verification_url(report, tmp_path, settings):
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(stored_bytes(report))
    subprocess.run(["pdftoppm", "-png", "-r", "150", str(pdf), str(tmp_path / "page")], check=True)
    pages = sorted(tmp_path.glob("page*.png"))
    decoded = subprocess.run(["zbarimg", "-q", "--raw", *map(str, pages)], capture_output=True, text=True)
    assert decoded.stdout.strip() == f"{settings.SITE_URL}/reports/verify/?report={report.uid}"


def _flip(data: bytes, position: int) -> bytes:
    return data[:position] + bytes([data[position] ^ 0x01]) + data[position + 1 :]


def test_flipping_one_byte_anywhere_makes_verification_fail(report):
    data = stored_bytes(report)
    contents = data.index(b"/Contents <") + len(b"/Contents <")
    padding = data.index(b"0000000000", contents)  # unused space reserved for the signature
    positions = {
        data.index(b"stream") + 20,  # page content
        contents + 10,  # the signature itself
        padding + 4,  # signature padding: the signature still verifies, the stored sha256 does not match
        data.rindex(b"startxref") + 12,
        len(data) - 40,
        *random.Random(6).sample(range(len(data)), 25),
    }
    for position in sorted(positions):
        result = verify.verify_report_pdf(_flip(data, position))
        assert not result.valid, f"byte {position} flipped and still valid"
        assert result.status in {verify.ALTERED, verify.UNREADABLE}, (position, result.status)


def test_content_appended_after_signing_is_reported(report):
    data = stored_bytes(report)
    writer = IncrementalPdfFileWriter(io.BytesIO(data))
    writer.root["/PageMode"] = generic.NameObject("/UseOutlines")
    writer.update_root()
    out = io.BytesIO()
    writer.write(out)
    result = verify.verify_report_pdf(out.getvalue())
    assert not result.valid and result.status == verify.ALTERED
    assert "after signing" in result.message


def _plain_content(**overrides) -> ReportContent:
    import datetime as dt

    now = dt.datetime(2026, 1, 2, 3, 4, tzinfo=dt.UTC)
    values = {
        "uid": "00000000-0000-4000-8000-000000000000",
        "organization": "Elsewhere",
        "case_id": 1,
        "patient_reference": "X",
        "age": None,
        "sex": "Unknown",
        "site": "Unknown",
        "lesion_label": "",
        "priority": "Routine",
        "clinical_notes": "",
        "submitted_at": now,
        "analysed_at": None,
        "reviewed_at": now,
        "signed_at": now,
        "case_risk": None,
        "case_risk_band": "",
        "model_version": "",
        "diagnosis": "Other",
        "malignant": False,
        "management": "Reassure",
        "follow_up_months": None,
        "notes": "",
        "agrees_with_ai": False,
        "signer_name": "Nobody",
        "verification_url": "http://example.invalid/",
        "images": [],
    }
    values.update(overrides)
    return ReportContent(**values)


@pytest.mark.django_db
def test_unrelated_pdf_non_pdf_and_empty_get_clear_answers(signing_ca):
    unsigned = verify.verify_report_pdf(render_report_pdf(_plain_content()))
    assert unsigned.status == verify.NO_SIGNATURE and not unsigned.valid
    assert verify.verify_report_pdf(b"GIF89a not a pdf").status == verify.NOT_PDF
    assert verify.verify_report_pdf(b"").status == verify.EMPTY
    assert verify.verify_report_pdf(b"%PDF-1.7\n garbage \x00\xff" * 50).status == verify.UNREADABLE
    for result in (unsigned, verify.verify_report_pdf(b"")):
        assert result.message and not result.valid


@pytest.mark.django_db
def test_pdf_signed_by_another_ca_is_untrusted(review, signing_dir, tmp_path, settings):
    """A report signed by another TeleDerm installation (another CA) is intact but not trusted here."""
    settings.TELEDER_SIGNING_DIR = tmp_path / "other-installation"
    from cases.reports import signing

    signing.ca_init(common_name="Someone Else CA")
    foreign = report_generate(review_id=review.pk)
    foreign_bytes = stored_bytes(foreign)
    settings.TELEDER_SIGNING_DIR = signing_dir
    signing.ca_init()
    result = verify.verify_report_pdf(foreign_bytes)
    assert result.status == verify.UNTRUSTED and result.intact and not result.trusted and not result.valid


def test_generating_twice_returns_the_stored_report(report, review):
    again = report_generate(review_id=review.pk)
    assert again.pk == report.pk and Report.objects.count() == 1


def test_correction_produces_an_addendum_and_keeps_the_original(report, dermatologist):
    original_bytes = stored_bytes(report)
    correction = services.review_correct(
        actor=dermatologist,
        case=report.case,
        reason="Second image reviewed at full resolution.",
        diagnosis="nv",
        malignant=False,
        management="follow_up",
        follow_up_months=6,
        notes="On review of the second image: benign naevus.",
    )
    assert correction.supersedes_id == report.review_id
    addendum = report_generate(review_id=correction.pk)
    assert addendum.supersedes_id == report.pk and addendum.is_addendum
    assert addendum.file.name != report.file.name and addendum.sha256 != report.sha256
    report.refresh_from_db()
    assert (
        stored_bytes(report) == original_bytes and report.sha256 == hashlib.sha256(original_bytes).hexdigest()
    )
    text = pdf_text(stored_bytes(addendum))
    assert (
        "addendum" in text and str(report.uid) in text and "Melanocytic nevus" in text and "6 months" in text
    )
    assert "Reason for the correction: Second image reviewed at full resolution." in " ".join(text.split())
    addendum.case.refresh_from_db()
    assert addendum.case.status == CaseStatus.REPORTED

    original = verify.verify_report_pdf(original_bytes)
    assert (
        original.valid and original.superseded_by_uid == str(addendum.uid) and "addendum" in original.message
    )
    corrected = verify.verify_report_pdf(stored_bytes(addendum))
    assert corrected.valid and corrected.is_addendum and corrected.supersedes_uid == str(report.uid)


def test_report_of_a_case_that_is_not_reviewed_is_refused(analysed_case, dermatologist, signing_ca):
    # A review row the services would never create on a case awaiting review: the report service refuses it.
    stray = Review.objects.create(
        case=analysed_case,
        reviewer=dermatologist,
        diagnosis="nv",
        malignant=False,
        management="reassure",
        agrees_with_ai=False,
    )
    with pytest.raises(services.IllegalTransition):
        report_generate(review_id=stray.pk)
    assert not Report.objects.exists()
    analysed_case.refresh_from_db()
    assert analysed_case.status == CaseStatus.AWAITING_REVIEW


def test_wrappable_splits_long_tokens_and_collapses_blank_lines():
    text = wrappable("a " + "x" * 100 + "\n\n\n\n\nb")
    assert text == "a " + " ".join(["x" * 40, "x" * 40, "x" * 20]) + "\n\nb"
    assert wrappable("ordinary words stay as they are") == "ordinary words stay as they are"


@pytest.mark.django_db
def test_long_free_text_flows_over_pages_and_is_all_printed():
    notes = " ".join(f"finding{i:04d}" for i in range(600))  # about 7,000 characters
    pdf = render_report_pdf(_plain_content(notes=notes, clinical_notes="y" * 300, patient_reference="R" * 64))
    text = pdf_text(pdf)
    assert "finding0000" in text and "finding0599" in text
    assert text.count("y" * 40) >= 7  # the unbroken token was split into printable pieces, none lost
    assert len(PdfReader(io.BytesIO(pdf)).pages) >= 2


def test_certificates_are_checked_as_of_the_given_time(report):
    data = stored_bytes(report)
    assert verify.check_signature(data, at=report.signed_at).status == verify.VALID
    # Ten years earlier the signer's certificate did not exist yet: not trusted at that moment.
    long_before = report.signed_at.replace(year=report.signed_at.year - 10)
    assert verify.check_signature(data, at=long_before).status == verify.UNTRUSTED
