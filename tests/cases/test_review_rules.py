"""The review consistency rules, through the service layer that web and API share (cases.review_rules)."""

import pytest
from django.core.exceptions import ValidationError

from cases import review_rules, services
from cases.models import AuditEvent, CaseStatus, Review
from cases.vocabulary import Diagnosis, Management
from inference.models import ModelStatus, ModelVersion
from tests.support.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def model_version(db):
    return ModelVersion.objects.create(
        name="rules-ensemble",
        version="1.0.0",
        status=ModelStatus.ACTIVE,
        sha256="1" * 64,
        package_path="/nonexistent",
        manifest={"risk_bands": {"medium": 0.3, "high": 0.7}},
        threshold=0.5,
    )


@pytest.fixture
def analysed(make_case, model_version):
    """``analysed(probability)``: a case awaiting review with that AI risk."""

    def make(probability: float = 0.2, **kwargs):
        case = make_case(1, **kwargs)
        services.case_claim_for_analysis(case_id=case.pk)
        image = case.images.get()
        result = services.ImageResult(
            image_id=image.pk, probability=probability, member_probabilities={"m": probability}, latency_ms=1
        )
        return services.case_record_analysis(case_id=case.pk, model_version=model_version, results=[result])

    return make


def review(case, actor, **fields):
    values = {"diagnosis": "nv", "malignant": False, "management": "reassure", **fields}
    return services.review_submit(actor=actor, case=case, **values)


def errors_of(excinfo) -> dict:
    return excinfo.value.message_dict


@pytest.mark.parametrize("code", sorted(review_rules.MALIGNANT_DIAGNOSES))
def test_every_malignant_code_refuses_a_benign_call(analysed, dermatologist, code):
    case = analysed(0.9)
    with pytest.raises(ValidationError) as caught:
        review(case, dermatologist, diagnosis=code, malignant=False, management="biopsy")
    assert "is a malignant diagnosis" in errors_of(caught)["malignant"][0]
    case.refresh_from_db()
    assert case.status == CaseStatus.AWAITING_REVIEW and not Review.objects.exists()


@pytest.mark.parametrize("code", sorted(review_rules.MALIGNANT_DIAGNOSES))
def test_malignancy_is_derived_from_a_malignant_code(analysed, dermatologist, code):
    stored = review(analysed(0.9), dermatologist, diagnosis=code, malignant=None, management="biopsy")
    assert stored.malignant is True


def test_benign_codes_derive_benign_and_other_needs_a_call(analysed, dermatologist):
    assert review(analysed(), dermatologist, diagnosis="df", malignant=None).malignant is False
    with pytest.raises(ValidationError) as caught:
        review(analysed(), dermatologist, diagnosis="other", malignant=None, management="biopsy")
    assert "Say whether the lesion is malignant" in errors_of(caught)["malignant"][0]


def test_every_vocabulary_code_has_a_rule():
    covered = review_rules.MALIGNANT_DIAGNOSES | review_rules.BENIGN_DIAGNOSES | {Diagnosis.OTHER}
    assert covered == set(Diagnosis.values)


def test_the_reported_contradiction_is_refused(analysed, dermatologist):
    # The example: melanoma, not malignant, reassure.
    case = analysed(0.9)
    with pytest.raises(ValidationError) as caught:
        review(case, dermatologist, diagnosis="mel", malignant=False, management="reassure")
    errors = errors_of(caught)
    assert "malignant" in errors and "Reassure" in errors["management"][0]


def test_a_malignant_lesion_is_never_reassured(analysed, dermatologist):
    with pytest.raises(ValidationError) as caught:
        review(analysed(), dermatologist, diagnosis="other", malignant=True, management="reassure")
    assert "cannot be managed with 'Reassure" in errors_of(caught)["management"][0]


def test_follow_up_months_with_another_management_are_refused_not_dropped(analysed, dermatologist):
    case = analysed()
    with pytest.raises(ValidationError) as caught:
        review(case, dermatologist, management="reassure", follow_up_months=6)
    assert "only go with 'Follow-up'" in errors_of(caught)["follow_up_months"][0]
    assert review(case, dermatologist, management="follow_up", follow_up_months=6).follow_up_months == 6


def test_follow_up_needs_months(analysed, dermatologist):
    with pytest.raises(ValidationError) as caught:
        review(analysed(), dermatologist, management="follow_up", follow_up_months=None)
    assert "(1-60)" in errors_of(caught)["follow_up_months"][0]


@pytest.mark.parametrize(
    "fields",
    [
        {"diagnosis": "nv", "malignant": True, "management": "biopsy"},
        {"diagnosis": "akiec", "malignant": True, "management": "follow_up", "follow_up_months": 3},
        {"diagnosis": "bkl", "malignant": False, "management": "urgent_referral"},
    ],
    ids=["benign-code-called-malignant", "malignant-only-followed-up", "benign-urgent-referral"],
)
def test_unusual_combinations_need_a_recorded_justification(analysed, dermatologist, fields):
    case = analysed(0.9)
    with pytest.raises(ValidationError) as caught:
        review(case, dermatologist, **fields)
    assert "unusual" in errors_of(caught)["justification"][0]
    why = "Clinical context from the referral letter explains this."
    stored = review(case, dermatologist, **fields, justification=why)
    assert stored.justification == why
    event = AuditEvent.objects.get(action="review.create", object_id=str(stored.pk))
    assert event.details["justification"] == why and event.details["unusual"]


@pytest.mark.parametrize(
    "risk,malignant,diagnosis,management,flagged,agrees",
    [
        (0.97, False, "nv", "reassure", True, False),  # the case: flagged, not confirmed
        (0.97, True, "mel", "biopsy", True, True),
        (0.10, True, "mel", "biopsy", False, False),
        (0.10, False, "nv", "reassure", False, True),
    ],
)
def test_agreement_is_derived_from_the_ai_flag_and_the_malignant_call(
    analysed, dermatologist, risk, malignant, diagnosis, management, flagged, agrees
):
    stored = review(
        analysed(risk), dermatologist, diagnosis=diagnosis, malignant=malignant, management=management
    )
    assert stored.ai_flagged is flagged and stored.agrees_with_ai is agrees


def test_a_claimed_agreement_that_contradicts_the_facts_is_refused(analysed, dermatologist):
    # "Confirm the AI" + naevus on a 0.97 high-risk case.
    case = analysed(0.97)
    with pytest.raises(ValidationError) as caught:
        review(case, dermatologist, agrees_with_ai=True)
    assert "the AI flagged this lesion" in errors_of(caught)["agrees_with_ai"][0]
    assert review(case, dermatologist, agrees_with_ai=False).agrees_with_ai is False


def test_a_second_plain_review_is_a_conflict_naming_the_first(analysed, dermatologist):
    case = analysed()
    first = review(case, dermatologist)
    with pytest.raises(services.ReviewAlreadyExists) as caught:
        review(case, dermatologist, diagnosis="mel", malignant=True, management="biopsy")
    assert caught.value.review_id == first.pk
    services.case_mark_reported(case_id=case.pk)
    with pytest.raises(services.ReviewAlreadyExists):
        review(case, dermatologist)
    assert Review.objects.filter(case=case).count() == 1


def test_a_correction_is_explicit_with_a_reason(analysed, dermatologist, org):
    case = analysed()
    first = review(case, dermatologist)
    correction = {"diagnosis": "bcc", "malignant": None, "management": "biopsy"}
    with pytest.raises(services.IllegalTransition):  # the report is not issued yet
        services.review_correct(actor=dermatologist, case=case, reason="Histology: BCC.", **correction)
    services.case_mark_reported(case_id=case.pk)
    with pytest.raises(ValidationError) as caught:
        services.review_correct(actor=dermatologist, case=case, reason=" ", **correction)
    assert "reason" in errors_of(caught)
    colleague = UserFactory(role="dermatologist", organizations=[org])
    stored = services.review_correct(
        actor=colleague, case=case, reason="Histology came back: basal cell carcinoma.", **correction
    )
    assert stored.supersedes_id == first.pk and stored.malignant is True
    assert stored.correction_reason == "Histology came back: basal cell carcinoma."
    case.refresh_from_db()
    assert case.status == CaseStatus.REVIEWED
    assert AuditEvent.objects.filter(action="review.correct", object_id=str(stored.pk)).exists()


def test_corrections_follow_the_same_rules(analysed, dermatologist):
    case = analysed()
    review(case, dermatologist)
    services.case_mark_reported(case_id=case.pk)
    with pytest.raises(ValidationError) as caught:
        services.review_correct(
            actor=dermatologist,
            case=case,
            reason="Second opinion from the tumour board.",
            diagnosis="mel",
            malignant=False,
            management=Management.REASSURE,
        )
    assert "malignant" in errors_of(caught)
