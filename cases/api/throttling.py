"""Per-user (and, for logging in, per-address) rate limits, read from ``TELEDER_API_THROTTLE_RATES``.

Rates are looked up on every request rather than once at import (DRF's default), so that a deployment or a
test can change them through settings. Counters live in Django's cache.
"""

from django.conf import settings
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle


class _SettingsRate:
    scope: str

    def get_rate(self) -> str | None:
        return settings.TELEDER_API_THROTTLE_RATES.get(self.scope)


class ApiUserThrottle(_SettingsRate, UserRateThrottle):
    """Every request of a signed-in user."""

    scope = "user"


class UploadThrottle(_SettingsRate, UserRateThrottle):
    """Case submissions and image uploads per user (they are the expensive requests)."""

    scope = "uploads"


class LoginThrottle(_SettingsRate, AnonRateThrottle):
    """Login and token refresh attempts per client address (django-axes locks accounts on top of this)."""

    scope = "login"
