"""The contract check itself (tests/cases/api/contract.py), and behaviour the schema documents in words."""

from django.http import JsonResponse
from django.utils import timezone

from tests.cases.api import contract
from tests.cases.api.test_auth import assert_error


def test_the_contract_check_flags_undocumented_statuses_bodies_and_error_codes(db):
    ok = JsonResponse({"id": 1, "username": "u"}, status=418)
    assert contract.check("GET", "/api/v1/me/", ok) == [
        "GET /api/v1/me/ -> 418: status not documented (['200', '400', '401', '403', '404', '429'])"
    ]
    wrong_body = JsonResponse({"count": "many"}, status=200)
    assert any("is not of type 'integer'" in v for v in contract.check("GET", "/api/v1/cases/", wrong_body))
    wrong_code = JsonResponse({"error": {"code": "nope", "message": "x", "fields": {}}}, status=404)
    assert contract.check("GET", "/api/v1/cases/1/", wrong_code) == [
        "GET /api/v1/cases/1/ -> 404: error code 'nope' not documented (['not_found'])"
    ]
    right = JsonResponse(
        {"error": {"code": "not_found", "message": "No such case.", "fields": {}}}, status=404
    )
    assert contract.check("GET", "/api/v1/cases/1/", right) == []
    # reports/verify/ is its own operation, not reports/{uid}/.
    assert contract.check("POST", "/api/v1/reports/verify/", JsonResponse({}, status=200)) != [
        "POST /api/v1/reports/verify/ -> 200: undocumented method"
    ]


def test_the_submit_documents_its_503_and_login_its_own_401_and_429():
    paths = contract.schema()["paths"]
    submit = paths["/api/v1/cases/"]["post"]["responses"]
    assert contract._documented_codes(submit["503"]) == {"storage_unavailable"}
    assert "503" not in paths["/api/v1/cases/"]["get"]["responses"]
    login = paths["/api/v1/auth/login/"]["post"]["responses"]
    assert contract._documented_codes(login["401"]) == {"invalid_credentials"}
    assert contract._documented_codes(login["429"]) == {"throttled", "locked_out"}
    images = paths["/api/v1/cases/{id}/images/"]["post"]["responses"]["201"]
    assert images["content"]["application/json"]["schema"]["type"] == "array"
    descriptions = [op.get("description") for item in paths.values() for op in item.values()]
    assert all(descriptions) and len(set(descriptions)) == len(descriptions)
    assert not any("Base of every" in d for d in descriptions)


def test_the_year_of_birth_rule_is_what_the_schema_says(client_for, clinician):
    api = client_for(clinician)
    year = timezone.now().year
    for value, message in (
        (year + 1, "The year of birth cannot be in the future."),
        (year - 121, "That gives an age over 120 years."),
    ):
        response = api.post(
            "/api/v1/patients/", {"reference": f"Y{value}", "year_of_birth": value}, format="json"
        )
        assert assert_error(response, 400, "invalid")["fields"]["year_of_birth"] == [message]
    for value in (year, year - 120):
        assert (
            api.post(
                "/api/v1/patients/", {"reference": f"Y{value}", "year_of_birth": value}, format="json"
            ).status_code
            == 201
        )
    described = contract.schema()["components"]["schemas"]["PatientCreateRequest"]["properties"][
        "year_of_birth"
    ]
    assert "maximum" not in described and "future year" in described["description"]
