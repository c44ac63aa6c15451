"""The settings module as production runs it (DJANGO_HTTPS=1, a real secret key, a real host name): Django's
deployment checks pass and responses carry the security headers and secure cookies."""

import json
import secrets
import subprocess
import sys

from tests.support.workers import ROOT

PROBE = r"""
import json, django
django.setup()
from django.core.management import call_command
from django.test import Client
from django.test.utils import setup_test_environment
setup_test_environment()
call_command("check", "--deploy", "--fail-level", "WARNING", verbosity=0)
client = Client(HTTP_HOST="teleder.example.org")
secure = client.get("/accounts/login/", secure=True)
plain = client.get("/accounts/login/")
probe = client.get("/healthz")
cookie = secure.cookies.get("csrftoken")
print(json.dumps({
    "secure": secure.status_code, "plain": plain.status_code, "plain_location": plain.get("Location"),
    "probe": probe.status_code,
    "headers": {k: secure.get(k) for k in ("Strict-Transport-Security", "X-Frame-Options", "X-Content-Type-Options",
                                            "Referrer-Policy", "Cross-Origin-Opener-Policy")},
    "csrf_cookie_secure": bool(cookie and cookie["secure"]),
}))
"""


def test_production_settings_pass_the_deploy_checks_and_send_security_headers(tmp_path):
    env = {
        "PATH": "/usr/bin:/bin",
        "DJANGO_SETTINGS_MODULE": "teleder.settings",
        "DJANGO_HTTPS": "1",
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(64),
        "DJANGO_ALLOWED_HOSTS": "teleder.example.org",
        "TELEDER_VAR_DIR": str(tmp_path),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
    }
    result = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )

    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["secure"] == 200
    assert (seen["plain"], seen["plain_location"]) == (301, "https://teleder.example.org/accounts/login/")
    assert seen["probe"] == 200  # health probes are exempt from the HTTPS redirect
    assert seen["headers"] == {
        "Strict-Transport-Security": "max-age=31536000; includeSubDomains; preload",
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "Cross-Origin-Opener-Policy": "same-origin",
    }
    assert seen["csrf_cookie_secure"] is True
