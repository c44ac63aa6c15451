"""Mobile authentication: login, bearer access, refresh rotation, logout revocation, errors, throttling."""

import pytest

from tests.cases.api.conftest import login
from tests.support.factories import PASSWORD

ME = "/api/v1/me/"


def bearer(client, token: str):
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def assert_error(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "fields"}
    assert body["error"]["message"]
    if code:
        assert body["error"]["code"] == code
    return body["error"]


def test_login_returns_tokens_and_the_user_with_role_and_organizations(api_client, clinician, org):
    tokens = login(api_client, "clin")
    assert tokens["user"]["role"] == "clinician"
    assert tokens["user"]["organizations"] == [{"id": org.pk, "name": org.name, "slug": org.slug}]
    assert tokens["user"]["can_submit_cases"] is True
    me = bearer(api_client, tokens["access"]).get(ME)
    assert me.status_code == 200
    assert me.json()["username"] == "clin"


def test_wrong_password_is_401_in_the_error_format(api_client, clinician):
    response = api_client.post("/api/v1/auth/login/", {"username": "clin", "password": "nope"}, format="json")
    error = assert_error(response, 401, "invalid_credentials")
    assert "password" not in error["fields"]
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("header", [None, "Bearer not-a-jwt", "Token abc", "Bearer "])
def test_missing_or_bad_token_is_401(api_client, clinician, header):
    if header is not None:
        api_client.credentials(HTTP_AUTHORIZATION=header)
    assert_error(api_client.get(ME), 401)


def test_refresh_rotates_and_the_old_session_stops_working(api_client, clinician):
    first = login(api_client, "clin")
    response = api_client.post("/api/v1/auth/refresh/", {"refresh": first["refresh"]}, format="json")
    assert response.status_code == 200
    second = response.json()
    assert second["refresh"] != first["refresh"]
    assert bearer(api_client, second["access"]).get(ME).status_code == 200
    # The old refresh token cannot be replayed, and access tokens minted with it are dead.
    assert_error(api_client.post("/api/v1/auth/refresh/", {"refresh": first["refresh"]}, format="json"), 401)
    assert_error(bearer(api_client, first["access"]).get(ME), 401, "session_revoked")


def test_logout_revokes_the_access_and_refresh_tokens_at_once(api_client, clinician):
    tokens = login(api_client, "clin")
    other_device = login(api_client, "clin")
    bearer(api_client, tokens["access"])
    response = api_client.post("/api/v1/auth/logout/", {"refresh": tokens["refresh"]}, format="json")
    assert response.status_code == 200
    assert response.json() == {"revoked_sessions": 1}
    assert_error(api_client.get(ME), 401)
    assert_error(api_client.post("/api/v1/auth/refresh/", {"refresh": tokens["refresh"]}, format="json"), 401)
    # Another device's session is untouched.
    assert bearer(api_client, other_device["access"]).get(ME).status_code == 200


def test_logout_everywhere_ends_every_session(api_client, clinician):
    devices = [login(api_client, "clin") for _ in range(3)]
    bearer(api_client, devices[0]["access"])
    response = api_client.post("/api/v1/auth/logout/", {"all_devices": True}, format="json")
    assert response.json() == {"revoked_sessions": 3}
    for tokens in devices:
        assert_error(bearer(api_client, tokens["access"]).get(ME), 401)


def test_logout_needs_a_refresh_token_or_all_devices(client_for, clinician):
    client = client_for(clinician)
    error = assert_error(client.post("/api/v1/auth/logout/", {}, format="json"), 400, "invalid")
    assert "refresh" in error["fields"]
    assert_error(client.post("/api/v1/auth/logout/", {"refresh": "garbage"}, format="json"), 400)


def test_another_users_refresh_token_is_not_revoked_by_my_logout(api_client, clinician, dermatologist):
    theirs = login(api_client, "derm")
    mine = login(api_client, "clin")
    bearer(api_client, mine["access"])
    assert api_client.post("/api/v1/auth/logout/", {"refresh": theirs["refresh"]}, format="json").json() == {
        "revoked_sessions": 0
    }
    assert bearer(api_client, theirs["access"]).get(ME).status_code == 200


def test_deactivated_user_loses_access_immediately(api_client, clinician):
    tokens = login(api_client, "clin")
    clinician.is_active = False
    clinician.save(update_fields=["is_active"])
    assert_error(bearer(api_client, tokens["access"]).get(ME), 401)
    assert_error(api_client.post("/api/v1/auth/refresh/", {"refresh": tokens["refresh"]}, format="json"), 401)


@pytest.mark.parametrize(
    "body,content_type",
    [("{not json", "application/json"), ("username=clin", "text/plain"), ("[]", "application/json")],
)
def test_malformed_login_bodies_are_4xx_never_500(api_client, clinician, body, content_type):
    response = api_client.generic("POST", "/api/v1/auth/login/", body, content_type=content_type)
    assert response.status_code in (400, 415)
    assert_error(response, response.status_code)


def test_login_is_throttled_per_address(api_client, clinician, settings):
    settings.TELEDER_API_THROTTLE_RATES = {**settings.TELEDER_API_THROTTLE_RATES, "login": "3/min"}
    for _ in range(3):
        api_client.post("/api/v1/auth/login/", {"username": "clin", "password": "x"}, format="json")
    response = api_client.post("/api/v1/auth/login/", {"username": "clin", "password": "x"}, format="json")
    assert_error(response, 429, "throttled")
    assert int(response["Retry-After"]) > 0


def test_requests_are_throttled_per_user(client_for, clinician, dermatologist, settings):
    settings.TELEDER_API_THROTTLE_RATES = {**settings.TELEDER_API_THROTTLE_RATES, "user": "5/min"}
    client = client_for(clinician)
    assert [client.get(ME).status_code for _ in range(6)] == [200] * 5 + [429]
    assert client_for(dermatologist).get(ME).status_code == 200


def test_unknown_api_path_is_json_404(client_for, clinician):
    response = client_for(clinician).get("/api/v1/nothing-here/")
    assert_error(response, 404, "not_found")


def test_repeated_failed_logins_lock_the_account_with_a_429(api_client, clinician, settings):
    settings.AXES_ENABLED = True
    settings.AXES_FAILURE_LIMIT = 2
    for _ in range(2):
        api_client.post("/api/v1/auth/login/", {"username": "clin", "password": "wrong"}, format="json")
    locked = api_client.post("/api/v1/auth/login/", {"username": "clin", "password": PASSWORD}, format="json")
    error = assert_error(locked, 429, "locked_out")
    assert int(locked["Retry-After"]) > 0
    assert "access" not in locked.json()
    # The same catalogue text as the web lock-out page.
    assert error["message"].startswith("Too many failed logins for this username from your network address.")
