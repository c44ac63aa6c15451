"""Similar confirmed lesions on the review and case pages and through the API: the right neighbours, in order,
and never another organization's images or patient data."""

import pytest
from django.urls import reverse

from cases.vocabulary import Role
from tests.support.factories import UserFactory

RED, NEAR_RED, BLUE = (200, 40, 40), (190, 50, 45), (40, 40, 200)


@pytest.fixture
def other_dermatologist(other_org):
    return UserFactory(username="otherderm", role=Role.DERMATOLOGIST, organizations=[other_org])


@pytest.fixture
def library(feature_model, submit, confirm, clinician, dermatologist, other_clinician, other_dermatologist):
    """North: a reviewed near-red melanoma and a blue nevus; South: a red basal cell carcinoma (the closest
    image of all to the query, but another organization's); and North's red query awaiting review."""
    melanoma = submit(clinician, NEAR_RED, seed=1)
    confirm(melanoma, dermatologist, "mel", True)
    nevus = submit(clinician, BLUE, seed=2)
    confirm(nevus, dermatologist, "nv", False)
    south = submit(other_clinician, RED, seed=3)
    confirm(south, other_dermatologist, "bcc", True)
    query = submit(clinician, RED, seed=4)
    assert query.status == "awaiting_review"
    return {"melanoma": melanoma, "nevus": nevus, "south": south, "query": query}


def _image_url(case):
    image = case.images.get()
    return reverse("case_image", args=[case.pk, image.pk])


def test_the_review_page_shows_the_nearest_confirmed_lesions_of_the_organization_only(
    client, dermatologist, library
):
    client.force_login(dermatologist)
    page = client.get(reverse("review_case", args=[library["query"].pk])).content.decode()
    start = page.index('id="similar-lesions"')
    section = page[start : page.index("</section>", start)]
    assert "Melanocytic nevus" in section and "Melanoma" in section
    # The melanoma (near red) comes before the nevus (blue).
    assert section.index(_image_url(library["melanoma"])) < section.index(_image_url(library["nevus"]))
    assert _image_url(library["south"]) not in page
    assert "Basal cell carcinoma" not in section
    assert library["south"].lesion.patient.reference not in page


def test_the_api_lists_neighbours_by_distance_and_never_another_organizations(client, dermatologist, library):
    client.force_login(dermatologist)
    response = client.get(reverse("api:case-similar", args=[library["query"].pk]))
    assert response.status_code == 200
    body = response.json()
    lesions = body["images"][0]["lesions"]
    assert [lesion["case_id"] for lesion in lesions] == [library["melanoma"].pk, library["nevus"].pk]
    assert [lesion["diagnosis"] for lesion in lesions] == ["Melanoma", "Melanocytic nevus"]
    distances = [lesion["distance"] for lesion in lesions]
    assert distances == sorted(distances) and 0 <= distances[0] < distances[1]
    assert body["unavailable"] == "" and body["partial"] == ""
    assert "patient" not in response.content.decode()


def test_another_organizations_reader_gets_a_404_and_sees_only_their_own_library(
    client, other_dermatologist, library, other_clinician, submit
):
    client.force_login(other_dermatologist)
    assert client.get(reverse("api:case-similar", args=[library["query"].pk])).status_code == 404
    assert client.get(reverse("review_case", args=[library["query"].pk])).status_code == 404
    # South's own red query finds South's confirmed case, never North's two.
    south_query = submit(other_clinician, RED, seed=9)
    lesions = client.get(reverse("api:case-similar", args=[south_query.pk])).json()["images"][0]["lesions"]
    assert [lesion["case_id"] for lesion in lesions] == [library["south"].pk]


def test_a_platform_admin_also_sees_only_the_cases_organization(client, platform_admin, library):
    client.force_login(platform_admin)
    lesions = client.get(reverse("api:case-similar", args=[library["query"].pk])).json()["images"][0][
        "lesions"
    ]
    assert library["south"].pk not in [lesion["case_id"] for lesion in lesions]
    assert len(lesions) == 2


def test_the_case_page_shows_them_to_the_submitting_clinician(client, clinician, library):
    client.force_login(clinician)
    page = client.get(reverse("case_detail", args=[library["query"].pk])).content.decode()
    assert 'id="similar-lesions"' in page and _image_url(library["melanoma"]) in page
    assert _image_url(library["south"]) not in page


def test_a_package_without_features_still_serves_and_says_there_are_no_similar_lesions(
    client, plain_model, submit, clinician, dermatologist
):
    case = submit(clinician, RED)
    assert case.status == "awaiting_review"
    client.force_login(dermatologist)
    page = client.get(reverse("review_case", args=[case.pk])).content.decode()
    assert "declares no image features: similar lesions are not available" in page
    body = client.get(reverse("api:case-similar", args=[case.pk])).json()
    assert body["images"] == [] and "declares no image features" in body["unavailable"]
