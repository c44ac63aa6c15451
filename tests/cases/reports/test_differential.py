"""The signed report prints the AI differential's top three diagnoses per image when the model gave one."""

import re

from cases import services
from cases.reports.services import report_generate
from tests.cases.reports.helpers import pdf_text, stored_bytes

CLASSES = {"akiec": 0.02, "bcc": 0.05, "bkl": 0.08, "df": 0.01, "mel": 0.61, "nv": 0.22, "vasc": 0.01}


def test_the_report_lists_the_top_three_diagnoses(make_case, model_version, dermatologist, signing_ca):
    case = make_case(1)
    services.case_claim_for_analysis(case_id=case.pk)
    (image,) = case.images.all()
    result = services.ImageResult(
        image_id=image.pk,
        probability=0.68,
        member_probabilities={"m0": 0.68},
        latency_ms=4.0,
        class_probabilities=CLASSES,
    )
    case = services.case_record_analysis(case_id=case.pk, model_version=model_version, results=[result])
    review = services.review_submit(
        actor=dermatologist, case=case, diagnosis="mel", malignant=True, management="biopsy", notes="Excise."
    )
    text = re.sub(r"\s+", " ", pdf_text(stored_bytes(report_generate(review_id=review.pk))))
    assert "AI differential: Melanoma 0.61; Melanocytic nevus 0.22; Benign keratosis 0.08" in text
