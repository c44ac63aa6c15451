"""Content-Security-Policy: the platform's pages run only their own scripts."""

from teleder.middleware import CONTENT_SECURITY_POLICY


def test_pages_send_a_policy_that_refuses_inline_and_foreign_scripts(client, clinician):
    client.force_login(clinician)
    for path in ("/accounts/login/", "/", "/cases/new/", "/reports/verify/"):
        policy = client.get(path)["Content-Security-Policy"]
        assert policy == CONTENT_SECURITY_POLICY
        assert (
            "script-src 'self'" in policy
            and "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]
        )
        assert "frame-ancestors 'none'" in policy


def test_third_party_pages_with_inline_scripts_are_exempt(admin_client, db):
    assert "Content-Security-Policy" not in admin_client.get("/admin/")
    assert "Content-Security-Policy" not in admin_client.get("/api/docs/")
