"""The audit trail is append-only through every path the application offers, and admins can export it."""

import csv
import io

import pytest
from django.core.exceptions import PermissionDenied
from django.core.management import CommandError, call_command

from cases.audit import audit_record
from cases.models import AuditEvent
from cases.vocabulary import Role
from teleder.context import set_request_context
from tests.support.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def event(make_case, clinician):
    case = make_case(1)
    set_request_context(request_id="req-audit-1", ip_address="198.51.100.4")
    try:
        return audit_record(actor=clinician, action="case.view", obj=case, note="opened from the list")
    finally:
        set_request_context(request_id=None, ip_address=None)


def _rows(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def test_events_cannot_be_changed_or_deleted_one_by_one(event):
    event.action = "case.nothing_to_see"
    with pytest.raises(PermissionDenied):
        event.save()
    with pytest.raises(PermissionDenied):
        event.delete()
    assert AuditEvent.objects.get(pk=event.pk).action == "case.view"


def test_events_cannot_be_changed_or_deleted_in_bulk(event):
    before = AuditEvent.objects.count()
    with pytest.raises(PermissionDenied):
        AuditEvent.objects.filter(pk=event.pk).update(action="case.nothing_to_see")
    with pytest.raises(PermissionDenied):
        AuditEvent.objects.all().delete()
    with pytest.raises(PermissionDenied):
        AuditEvent.objects.bulk_update([event], ["action"])
    assert AuditEvent.objects.count() == before
    assert AuditEvent.objects.get(pk=event.pk).action == "case.view"


def test_admin_site_offers_no_change_or_delete(client, event):
    superuser = UserFactory(username="root", role=Role.ADMIN, is_staff=True, is_superuser=True)
    client.force_login(superuser)

    assert client.post(f"/admin/cases/auditevent/{event.pk}/change/", {"action": "x"}).status_code == 403
    assert client.post(f"/admin/cases/auditevent/{event.pk}/delete/", {"post": "yes"}).status_code == 403
    assert AuditEvent.objects.get(pk=event.pk).action == "case.view"


def test_export_command_writes_every_event_as_csv(event, tmp_path):
    output = tmp_path / "audit.csv"
    call_command("export_audit", "--output", str(output), stderr=io.StringIO())

    rows = _rows(output.read_text())
    assert len(rows) == AuditEvent.objects.count()
    viewed = next(r for r in rows if r["action"] == "case.view")
    assert viewed["actor"] == "clin"
    assert viewed["object_type"] == "case"
    assert viewed["ip_address"] == "198.51.100.4"
    assert viewed["request_id"] == "req-audit-1"
    assert viewed["organization"] == "north"
    assert '"note": "opened from the list"' in viewed["details"]


def test_export_command_filters_and_refuses_bad_dates(event):
    out = io.StringIO()
    call_command("export_audit", "--action", "case.view", stdout=out)
    assert [r["action"] for r in _rows(out.getvalue())] == ["case.view"]

    out = io.StringIO()
    call_command("export_audit", "--since", "2999-01-01", stdout=out)
    assert _rows(out.getvalue()) == []

    with pytest.raises(CommandError, match="not a date"):
        call_command("export_audit", "--since", "yesterday", stdout=io.StringIO())


def test_export_neutralises_spreadsheet_formulas(make_case, clinician):
    case = make_case(1)
    audit_record(actor=clinician, action='=HYPERLINK("https://evil.example")', obj=case)

    out = io.StringIO()
    call_command("export_audit", "--object-type", "case", stdout=out)

    actions = [r["action"] for r in _rows(out.getvalue())]
    assert '\'=HYPERLINK("https://evil.example")' in actions
    assert not any(a.startswith("=") for a in actions)


def test_admins_download_the_trail_and_the_download_is_audited(client, event, platform_admin):
    client.force_login(platform_admin)

    response = client.get("/admin/audit/export.csv", {"action": "case.view"})

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="teleder-audit-')
    rows = _rows(b"".join(response.streaming_content).decode())
    assert [(r["action"], r["object_id"]) for r in rows] == [("case.view", event.object_id)]
    export = AuditEvent.objects.filter(action="audit.export").get()
    assert export.actor == platform_admin
    assert export.details == {"rows": 1, "filters": {"action": "case.view"}}


def test_bad_filter_is_a_400_not_a_500(client, platform_admin):
    client.force_login(platform_admin)
    response = client.get("/admin/audit/export.csv", {"since": "<script>"})
    assert response.status_code == 400
    assert "not a date" in response.content.decode()


def test_only_admins_can_export(client, event, clinician, dermatologist):
    anonymous = client.get("/admin/audit/export.csv")
    assert anonymous.status_code == 302 and "/accounts/login/" in anonymous["Location"]
    for user in (clinician, dermatologist):
        client.force_login(user)
        assert client.get("/admin/audit/export.csv").status_code == 403
    assert not AuditEvent.objects.filter(action="audit.export").exists()
