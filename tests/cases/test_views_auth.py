"""Log in, log out, password change and reset, and one start page per role."""

import re

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


def test_pages_need_a_login(client):
    for name in ("home", "case_list", "case_create", "review_queue", "patient_list", "audit_trail"):
        response = client.get(reverse(name))
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))


def test_login_keeps_the_username_on_a_wrong_password(client, clinician):
    response = client.post(reverse("login"), {"username": "clin", "password": "wrong"})
    assert response.status_code == 200
    assert b'value="clin"' in response.content
    assert b"Please enter a correct username and password" in response.content


def test_login_then_logout(client, clinician, password):
    response = client.post(reverse("login"), {"username": "clin", "password": password})
    assert response.status_code == 302 and response["Location"] == reverse("home")
    assert client.get(reverse("home")).status_code == 200
    response = client.post(reverse("logout"))
    assert response.status_code == 302
    assert client.get(reverse("home")).status_code == 302


def test_each_role_gets_its_own_home_page(client, clinician, dermatologist, platform_admin):
    client.force_login(clinician)
    assert b"Submit a new case" in client.get(reverse("home")).content
    client.force_login(dermatologist)
    assert b"Open the review queue" in client.get(reverse("home")).content
    client.force_login(platform_admin)
    assert b"Active model" in client.get(reverse("home")).content


def test_password_change(client, clinician, password):
    client.force_login(clinician)
    new = "a-much-better-passphrase-42"
    response = client.post(
        reverse("password_change"),
        {"old_password": password, "new_password1": new, "new_password2": new},
    )
    assert response.status_code == 302
    clinician.refresh_from_db()
    assert clinician.check_password(new)


def test_password_change_errors_are_shown(client, clinician):
    client.force_login(clinician)
    response = client.post(
        reverse("password_change"), {"old_password": "nope", "new_password1": "x", "new_password2": "y"}
    )
    assert response.status_code == 200
    assert b"Your old password was entered incorrectly" in response.content


def test_password_reset_by_email(client, clinician, mailoutbox):
    response = client.post(reverse("password_reset"), {"email": clinician.email})
    assert response.status_code == 302
    assert len(mailoutbox) == 1
    link = re.search(r"https?://[^/]+(/accounts/reset/\S+)", mailoutbox[0].body).group(1)
    response = client.get(link, follow=True)
    assert b"Choose a new password" in response.content
    new = "another-long-passphrase-7"
    response = client.post(response.redirect_chain[-1][0], {"new_password1": new, "new_password2": new})
    assert response.status_code == 302
    clinician.refresh_from_db()
    assert clinician.check_password(new)


def test_password_reset_for_an_unknown_address_reveals_nothing(client, mailoutbox):
    response = client.post(reverse("password_reset"), {"email": "nobody@example.org"})
    assert response.status_code == 302
    assert mailoutbox == []


def test_clinician_home_counts_their_cases(client, clinician, make_case):
    client.force_login(clinician)
    assert b"You have not submitted any case yet" in client.get(reverse("home")).content
    make_case(1)
    make_case(1, submission_key="two")
    body = client.get(reverse("home")).content.decode()
    assert "Being analysed: 2" in body and "Awaiting review: 0" in body
