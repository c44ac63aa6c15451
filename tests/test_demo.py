from django.core.management import call_command

from cases.models import Organization, User
from cases.vocabulary import Role


def test_demo_setup_creates_one_user_per_role_and_is_idempotent(db, client, capsys):
    call_command("demo", "--setup-only")
    call_command("demo", "--setup-only")
    out = capsys.readouterr().out
    assert "dermatologist" in out and "demo-dermatologist-2026" in out
    assert Organization.objects.count() == 2
    roles = set(User.objects.values_list("role", flat=True))
    assert roles == {Role.CLINICIAN, Role.DERMATOLOGIST, Role.ADMIN}
    derm = User.objects.get(username="dermatologist")
    assert derm.organizations.count() == 2
    assert client.login(username="clinician", password="demo-clinician-2026")
    assert client.get("/").status_code == 200


def test_login_page_answers(client, db):
    response = client.get("/accounts/login/")
    assert response.status_code == 200
    assert b"Log in" in response.content


def test_health_endpoint(client, db):
    assert client.get("/healthz").json() == {"status": "ok"}
