"""What a signed report says: the derived AI agreement, probabilities that are never rounded to 0.00, the
referring clinician, the signer's credentials, the follow-up due date, every image, the AI differential."""

import datetime as dt

import pytest

from cases import services
from cases.models import Prediction
from cases.reports.render import probability_text
from cases.reports.services import add_months, report_generate
from tests.cases.reports.helpers import pdf_text, stored_bytes


def flat(report) -> str:
    return " ".join(pdf_text(stored_bytes(report)).split())


@pytest.mark.parametrize(
    "value,text", [(0.0026, "< 0.01"), (0.0, "< 0.01"), (0.01, "0.01"), (0.354, "0.35"), (0.996, "> 0.99")]
)
def test_probabilities_are_never_printed_as_zero_or_one(value, text):
    assert probability_text(value) == text


def test_months_are_added_calendar_wise():
    assert add_months(dt.date(2026, 11, 30), 3) == dt.date(2027, 2, 28)
    assert add_months(dt.date(2026, 1, 15), 12) == dt.date(2027, 1, 15)


def test_flagged_lesion_not_confirmed_is_worded_as_what_happened(analysed_case, dermatologist, signing_ca):
    # The case's AI risk is 0.82 >= threshold 0.5: flagged. The dermatologist calls it a benign naevus.
    review = services.review_submit(
        actor=dermatologist,
        case=analysed_case,
        diagnosis="nv",
        malignant=False,
        management="follow_up",
        follow_up_months=3,
    )
    text = flat(report_generate(review_id=review.pk))
    assert "The AI flagged this lesion; the dermatologist did not confirm malignancy." in text
    assert "agreed with the AI" not in text
    due = add_months(review.created_at.date(), 3)
    assert f"due by {due.day} {due:%b %Y}" in text


def test_report_names_the_people_and_prints_every_image(analysed_case, dermatologist, clinician, signing_ca):
    clinician.first_name, clinician.last_name = "Casey", "Referrer"
    clinician.save()
    dermatologist.credentials = "MD, consultant dermatologist"
    dermatologist.registration_number = "GMC 7654321"
    dermatologist.save()
    review = services.review_submit(
        actor=dermatologist,
        case=analysed_case,
        diagnosis="nv",
        malignant=True,
        management="biopsy",
        justification="Clinically changing naevus with a new pink area; excise.",
    )
    text = flat(report_generate(review_id=review.pk))
    assert "Referring clinician Casey Referrer" in text
    assert "MD, consultant dermatologist (registration no. GMC 7654321)" in text
    assert "Clinically changing naevus with a new pink area; excise." in text
    assert "Image 1:" in text and "Image 2:" in text


def test_tiny_probability_and_differential_are_printed_truthfully(analysed_case, dermatologist, signing_ca):
    Prediction.objects.filter(image__case=analysed_case, probability__lt=0.5).update(probability=0.0026)
    top = Prediction.objects.filter(image__case=analysed_case).order_by("-probability").first()
    top.class_probabilities = {"mel": 0.6, "nv": 0.3, "bkl": 0.1}
    top.save()
    review = services.review_submit(
        actor=dermatologist, case=analysed_case, diagnosis="mel", malignant=None, management="biopsy"
    )
    text = flat(report_generate(review_id=review.pk))
    assert "p < 0.01" in text and "0.00" not in text
    assert "AI differential (multiclass output, highest first): Melanoma 0.60; Melanocytic nevus 0.30" in text


def test_report_without_differential_prints_none(report):
    assert "AI differential" not in flat(report)


def test_issuing_and_correcting_a_report_queues_a_mail_to_the_referring_clinician(
    report, clinician, dermatologist
):
    from cases.models import Notification

    issued = Notification.objects.get(kind="report_issued")
    assert issued.recipient == clinician and issued.case_id == report.case_id
    assert report.case.lesion.patient.reference not in issued.body and "Melanoma" not in issued.body
    correction = services.review_correct(
        actor=dermatologist,
        case=report.case,
        reason="Histology: basal cell carcinoma.",
        diagnosis="bcc",
        malignant=None,
        management="biopsy",
    )
    report_generate(review_id=correction.pk)
    corrected = Notification.objects.get(kind="report_corrected")
    assert corrected.recipient == clinician and "report corrected" in corrected.subject
