"""Login lock-out policy on top of django-axes (``AXES_HANDLER``, ``AXES_LOCKOUT_CALLABLE``).

A username is locked **from one network address** after ``AXES_FAILURE_LIMIT`` failures (5): a clinic behind
one NAT address keeps working when one user mistypes their password, and that user can still log in from
another network. An address as a whole (password spraying over many usernames) is throttled only at the much
higher ``TELEDER_LOGIN_ADDRESS_FAILURE_LIMIT`` (50) failures. Both last ``AXES_COOLOFF_TIME``.
"""

from datetime import timedelta

from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_failure_limit
from axes.models import AccessAttempt
from django.conf import settings
from django.db.models import Sum
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from cases import refusals

SCOPE_ATTR = "teleder_lockout_scope"


def cool_off_minutes() -> int:
    return max(1, round(float(settings.AXES_COOLOFF_TIME) * 60))


def address_failures(ip_address: str | None) -> int:
    if not ip_address:
        return 0
    since = timezone.now() - timedelta(minutes=cool_off_minutes())
    total = AccessAttempt.objects.filter(ip_address=ip_address, attempt_time__gte=since).aggregate(
        n=Sum("failures_since_start")
    )["n"]
    return int(total or 0)


class LockoutHandler(AxesDatabaseHandler):
    """Axes' database handler, plus the whole-address throttle at its own, higher limit."""

    def get_failures(self, request, credentials: dict | None = None) -> int:
        failures = super().get_failures(request, credentials)  # this username from this address
        limit = get_failure_limit(request, credentials)
        if (
            address_failures(getattr(request, "axes_ip_address", None))
            >= settings.TELEDER_LOGIN_ADDRESS_FAILURE_LIMIT
        ):
            setattr(request, SCOPE_ATTR, "address")
            return max(failures, limit)
        setattr(request, SCOPE_ATTR, "username")
        return failures


def lockout_message(request: HttpRequest) -> str:
    template = (
        refusals.LOCKED_ADDRESS
        if getattr(request, SCOPE_ATTR, "username") == "address"
        else refusals.LOCKED_USERNAME_AT_ADDRESS
    )
    return template.format(minutes=cool_off_minutes())


def lockout_response(request: HttpRequest, original_response=None, credentials=None) -> HttpResponse:
    """The web lock-out page: the site's layout, the exact reason, 429 with Retry-After."""
    response = render(
        request, "registration/locked_out.html", {"message": lockout_message(request)}, status=429
    )
    response["Retry-After"] = str(cool_off_minutes() * 60)
    return response
