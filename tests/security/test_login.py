"""Login defences through the real login page: lock-out after repeated failures (django-axes) and the
optional authenticator code (TOTP, django-otp) for users who enrolled a device."""

import io

import pytest
from axes.models import AccessAttempt
from django.core.management import call_command
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from cases.vocabulary import Role
from tests.support.factories import UserFactory

LOGIN = "/accounts/login/"
pytestmark = pytest.mark.django_db


@pytest.fixture
def axes_on(settings):
    settings.AXES_ENABLED = True
    settings.AXES_FAILURE_LIMIT = 5
    return settings


def _login(client, username, password, address="192.0.2.10", **extra):
    return client.post(LOGIN, {"username": username, "password": password, **extra}, REMOTE_ADDR=address)


def _logged_in(client) -> bool:
    return "_auth_user_id" in client.session


def test_five_failures_lock_the_account_from_that_address(client, axes_on, clinician, password):
    for _ in range(5):
        assert _login(client, "clin", "wrong-password").status_code in (200, 429)

    locked = _login(client, "clin", password)

    assert locked.status_code == 429
    assert not _logged_in(client)
    attempt = AccessAttempt.objects.get(username="clin")
    assert attempt.ip_address == "192.0.2.10"
    assert attempt.failures_since_start >= 5


def test_the_lock_out_page_has_the_site_layout_and_the_exact_reason(client, axes_on, clinician, password):
    for _ in range(5):
        _login(client, "clin", "wrong-password")

    locked = _login(client, "clin", password)

    assert locked.status_code == 429
    assert int(locked["Retry-After"]) == 900
    page = locked.content.decode()
    assert "<header" in page and "Login paused" in page
    assert (
        "Too many failed logins for this username from your network address. Logging in as this user from "
        "here is paused for 15 minutes; other users, and this user on another network, can still log in."
    ) in page
    assert "this account is locked" not in page


def test_one_users_failures_do_not_lock_out_colleagues_behind_the_same_address(
    client, axes_on, clinician, dermatologist, password
):
    # A clinic behind one NAT address: the clinician mistypes five times, the dermatologist still gets in.
    for _ in range(5):
        _login(client, "clin", "wrong-password")

    assert _login(client, "derm", password).status_code == 302
    client.logout()
    assert _login(client, "clin", password).status_code == 429
    # The same user on another network is not locked either.
    assert _login(client, "clin", password, address="203.0.113.50").status_code == 302


def test_an_address_is_throttled_only_at_the_much_higher_address_limit(
    client, axes_on, clinician, dermatologist, password
):
    axes_on.TELEDER_LOGIN_ADDRESS_FAILURE_LIMIT = 12
    # Password spraying: many usernames, a few tries each, from one address.
    for username in ("clin", "admin", "root", "nobody", "guest", "test"):
        _login(client, username, "wrong-password")
    assert _login(client, "derm", password).status_code == 302  # 6 failures: far below the address limit
    client.logout()
    for username in ("a1", "a2", "a3", "a4", "a5", "a6"):
        _login(client, username, "wrong-password")

    locked = _login(client, "derm", password)
    assert locked.status_code == 429
    assert "Too many failed logins from your network address." in locked.content.decode()
    assert _login(client, "derm", password, address="203.0.113.51").status_code == 302


def test_forwarded_for_header_cannot_dodge_the_lock_out(client, axes_on, clinician, password):
    for i in range(5):
        _login(client, "clin", "wrong-password", HTTP_X_FORWARDED_FOR=f"198.51.100.{i}")

    assert _login(client, "clin", password, HTTP_X_FORWARDED_FOR="198.51.100.99").status_code == 429


def test_an_administrator_can_lift_the_lock_out(client, axes_on, clinician, password):
    for _ in range(5):
        _login(client, "clin", "wrong-password")
    assert _login(client, "clin", password).status_code == 429

    call_command("axes_reset_username", "clin", stdout=io.StringIO())

    assert _login(client, "clin", password).status_code == 302
    assert _logged_in(client)


def test_a_success_below_the_limit_resets_the_count(client, axes_on, clinician, password):
    for _ in range(4):
        _login(client, "clin", "wrong-password")
    assert _login(client, "clin", password).status_code == 302
    client.logout()
    for _ in range(4):
        _login(client, "clin", "wrong-password")

    assert _login(client, "clin", password).status_code == 302


@pytest.fixture
def enrolled(dermatologist) -> TOTPDevice:
    return TOTPDevice.objects.create(user=dermatologist, name="phone", confirmed=True)


def _code(device: TOTPDevice) -> str:
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    return f"{totp.token():0{device.digits}d}"


def test_enrolled_user_needs_the_authenticator_code(client, enrolled, password):
    response = _login(client, "derm", password)

    assert response.status_code == 200
    assert not _logged_in(client)
    assert response.context["form"].non_field_errors() == ["Enter the code from your authenticator app."]


def test_enrolled_user_with_a_wrong_code_stays_out(client, enrolled, password):
    wrong = f"{(int(_code(enrolled)) + 1) % 1_000_000:06d}"

    response = _login(client, "derm", password, otp_token=wrong)

    assert response.status_code == 200
    assert not _logged_in(client)


def test_enrolled_user_with_the_right_code_is_verified_and_the_code_cannot_be_replayed(
    client, enrolled, password
):
    code = _code(enrolled)

    response = _login(client, "derm", password, otp_token=code)

    assert response.status_code == 302
    assert _logged_in(client)
    assert client.session["otp_device_id"] == enrolled.persistent_id
    client.logout()
    assert _login(client, "derm", password, otp_token=code).status_code == 200
    assert not _logged_in(client)


def test_users_without_a_device_log_in_with_the_password_alone(client, clinician, password):
    assert _login(client, "clin", password).status_code == 302
    assert _logged_in(client)


def test_login_page_offers_the_code_field(client, db):
    page = client.get(LOGIN).content.decode()
    assert 'name="otp_token"' in page
    assert 'autocomplete="one-time-code"' in page


def test_an_administrator_enrols_a_user_in_the_admin_and_gets_the_qr_code(client, dermatologist, password):
    superuser = UserFactory(username="root", role=Role.ADMIN, is_staff=True, is_superuser=True)
    client.force_login(superuser)
    key = "3132333435363738393031323334353637383930"

    response = client.post(
        "/admin/otp_totp/totpdevice/add/",
        {"user": dermatologist.pk, "name": "phone", "confirmed": "on", "key": key, "step": 30, "t0": 0,
         "digits": 6, "tolerance": 1, "drift": 0, "throttling_failure_count": 0},
    )  # fmt: skip

    assert response.status_code == 302, response.content.decode()[-2000:]
    device = TOTPDevice.objects.get(user=dermatologist)
    qr = client.get(f"/admin/otp_totp/totpdevice/{device.pk}/qrcode/")
    assert qr.status_code == 200 and qr["Content-Type"] == "image/svg+xml"
    assert "issuer=TeleDerm" in device.config_url
    client.logout()
    assert _login(client, "derm", password).status_code == 200  # the password alone is no longer enough
    assert _login(client, "derm", password, otp_token=_code(device)).status_code == 302
