import pytest
from django.http import Http404

from cases import selectors


def test_clinician_of_another_organization_cannot_get_a_case(make_case, other_clinician, clinician):
    case = make_case(1)
    assert selectors.case_get(clinician, case.pk) == case
    with pytest.raises(Http404):
        selectors.case_get(other_clinician, case.pk)
    assert not selectors.cases_visible_to(other_clinician).exists()


def test_dermatologist_sees_cases_of_served_organizations(make_case, dermatologist, other_org):
    from tests.support.factories import UserFactory

    case = make_case(1)
    assert selectors.case_get(dermatologist, case.pk) == case
    outsider = UserFactory(role="dermatologist", organizations=[other_org])
    with pytest.raises(Http404):
        selectors.case_get(outsider, case.pk)


def test_admin_sees_everything(make_case, platform_admin):
    case = make_case(1)
    assert selectors.case_get(platform_admin, case.pk) == case


def test_guessing_malformed_ids_is_a_404(clinician):
    for bad in ("abc", None, "1; DROP TABLE", 10**12):
        with pytest.raises(Http404):
            selectors.case_get(clinician, bad)
