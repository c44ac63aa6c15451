import pytest

from cases import services
from tests.support.factories import LesionFactory, PatientFactory


@pytest.fixture
def reviewed(make_case, record_analysis, dermatologist, clinician, org):
    """Make a case with the given AI probability, then record the dermatologist's review of it."""

    def make(probability: float, *, malignant: bool, n_images: int = 1, lesion=None, **case_kwargs):
        lesion = lesion or LesionFactory(patient=PatientFactory(organization=org, created_by=clinician))
        case = make_case(n_images, lesion_=lesion, **case_kwargs)
        record_analysis(case, [probability] * n_images)
        services.review_submit(
            actor=dermatologist,
            case=case,
            diagnosis="mel" if malignant else "nv",
            malignant=malignant,
            management="biopsy" if malignant else "follow_up",
            follow_up_months=None if malignant else 6,
            notes="Reviewer note: Jane Roe's mole",
        )
        return case

    return make
