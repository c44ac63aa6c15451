"""The signed report lists the similar lesions' diagnoses: no images, no patient data, no other organization."""

import uuid

from django.utils import timezone

from cases.reports.render import report_html
from cases.reports.services import report_content
from cases.vocabulary import Role
from tests.support.factories import UserFactory


def test_the_report_lists_the_similar_lesions_diagnoses_of_its_organization_only(
    feature_model, submit, confirm, clinician, dermatologist, other_clinician, other_org
):
    other_dermatologist = UserFactory(username="od", role=Role.DERMATOLOGIST, organizations=[other_org])
    confirm(submit(clinician, (190, 50, 45), seed=1), dermatologist, "mel", True)
    south = submit(other_clinician, (200, 40, 40), seed=2)
    confirm(south, other_dermatologist, "bcc", True)
    query = submit(clinician, (200, 40, 40), seed=3)
    review = confirm(query, dermatologist, "nv", False)

    content = report_content(review, uid=uuid.uuid4(), signed_at=timezone.now())
    assert [(position, [d for d, _, _ in lesions]) for position, lesions in content.similar_lesions] == [
        (1, ["Melanoma (malignant)"])
    ]
    html = report_html(content)
    assert "Similar confirmed lesions" in html and "Melanoma (malignant) (reviewed case," in html
    assert "Basal cell carcinoma" not in html
    assert south.lesion.patient.reference not in html
    assert f"/cases/{south.pk}/" not in html
