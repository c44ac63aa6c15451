"""The agreement dashboard: AI calls vs dermatologists' malignant calls, per model version and organization."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tests.support.factories import UserFactory


@pytest.fixture
def four_cases(reviewed):
    # threshold of the registered test package is 0.3
    reviewed(0.9, malignant=True)  # true positive
    reviewed(0.1, malignant=True)  # miss
    reviewed(0.6, malignant=False)  # false positive
    reviewed(0.05, malignant=False)  # true negative


def _api(client, user, **params):
    client.force_login(user)
    return client.get("/api/v1/learning/agreement/", params)


def test_counts_rates_intervals_and_misses(four_cases, client, dermatologist):
    response = _api(client, dermatologist)
    assert response.status_code == 200
    (row,) = response.json()["results"]
    assert (row["true_positive"], row["false_negative"], row["false_positive"], row["true_negative"]) == (
        1,
        1,
        1,
        1,
    )
    assert row["sensitivity"] == 0.5 and row["specificity"] == 0.5
    low, high = row["sensitivity_ci95"]
    assert 0.0 < low < 0.5 < high < 1.0  # exact interval of 1 of 2
    assert row["auc"] == 0.75  # malignant above benign in 3 of the 4 pairs (0.1 < 0.6 is the one not)
    assert [m["risk"] for m in row["misses"]] == [0.1]
    assert row["misses"][0]["diagnosis"] == "mel"


def test_other_roles_and_organizations(four_cases, client, clinician, other_org):
    assert _api(client, clinician).status_code == 403
    outsider = UserFactory(role="dermatologist", organizations=[other_org])
    assert _api(client, outsider).json()["results"] == []
    client.force_login(clinician)
    assert client.get(reverse("agreement")).status_code == 403


def test_page_shows_the_table_and_the_misses(four_cases, client, dermatologist):
    client.force_login(dermatologist)
    page = client.get(reverse("agreement")).content.decode()
    assert "AI agreement with dermatologists" in page
    assert "Misses:" in page and "AI risk 0.100" in page


def test_bad_filters_are_a_400_with_the_field(client, dermatologist):
    response = _api(client, dermatologist, since="yesterday-ish")
    assert response.status_code == 400
    assert "since" in response.content.decode()
    client.force_login(dermatologist)
    page = client.get(reverse("agreement"), {"since": "2026-02-01", "until": "2026-01-01"})
    assert page.status_code == 200 and "must not be after" in page.content.decode()


def test_the_number_of_queries_does_not_grow_with_the_cases(reviewed, client, platform_admin):
    reviewed(0.9, malignant=True)
    reviewed(0.1, malignant=True)  # a miss: its details are the second (and last) query
    client.force_login(platform_admin)
    with CaptureQueriesContext(connection) as few:
        assert client.get("/api/v1/learning/agreement/").status_code == 200
    for i in range(8):
        reviewed(0.2 + i / 20, malignant=bool(i % 2))
    with CaptureQueriesContext(connection) as many:
        response = client.get("/api/v1/learning/agreement/")
    assert response.json()["results"][0]["cases"] == 10
    assert len(many) == len(few)
