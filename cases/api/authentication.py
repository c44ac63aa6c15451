"""Mobile app authentication: a short-lived JWT access token and a long-lived, rotating refresh token.

Every refresh token is recorded (``rest_framework_simplejwt.token_blacklist``). Each access token carries the
id (``rjti``) of the refresh token it was minted with, and is accepted only while that refresh token is not
revoked: logging out, or rotating the refresh token, ends the session's access tokens at once instead of
when they expire. The check costs one query per request, which also loads the user.
"""

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.contrib.auth import authenticate
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone
from rest_framework import exceptions
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken
from rest_framework_simplejwt.utils import datetime_from_epoch

from cases.audit import AuditAction, audit_record
from cases.lockout import lockout_message
from cases.models import User

SESSION_CLAIM = "rjti"


@dataclass(frozen=True)
class TokenPair:
    access: str
    refresh: str
    access_expires_at: datetime
    refresh_expires_at: datetime
    user: User


def issue_tokens(user: User) -> TokenPair:
    """A new session for an already authenticated user: a refresh token and its first access token."""
    refresh = RefreshToken.for_user(user)  # records an OutstandingToken
    access = refresh.access_token
    access[SESSION_CLAIM] = refresh[jwt_settings.JTI_CLAIM]
    return TokenPair(
        access=str(access),
        refresh=str(refresh),
        access_expires_at=datetime_from_epoch(access["exp"]),
        refresh_expires_at=datetime_from_epoch(refresh["exp"]),
        user=user,
    )


def token_login(*, request: HttpRequest, username: str, password: str) -> TokenPair:
    """Check the credentials (through django-axes' lock-out) and start a session."""
    http_request = getattr(request, "_request", request)  # axes marks the Django request, not DRF's wrapper
    user = authenticate(request=http_request, username=username, password=password)
    if getattr(http_request, "axes_locked_out", False):
        # Answered here in the API's error format rather than by axes' middleware (an HTML page).
        http_request.axes_locked_out = False
        cool_off = settings.AXES_COOLOFF_TIME
        raise exceptions.Throttled(
            wait=float(cool_off) * 3600 if isinstance(cool_off, int | float) else None,
            detail=lockout_message(http_request),
            code="locked_out",
        )
    if user is None or not user.is_active:
        raise exceptions.AuthenticationFailed("Wrong username or password.", code="invalid_credentials")
    pair = issue_tokens(user)
    User.objects.filter(pk=user.pk).update(last_login=timezone.now())
    audit_record(actor=user, action=AuditAction.API_LOGIN, obj=user)
    return pair


def _refresh_token(raw: str) -> RefreshToken:
    try:
        return RefreshToken(raw)
    except TokenError as exc:
        raise exceptions.AuthenticationFailed(
            "The refresh token is invalid, expired or revoked.", code="token_not_valid"
        ) from exc


@transaction.atomic
def token_refresh(*, refresh: str) -> TokenPair:
    """Exchange a refresh token for a new pair. The old refresh token (and its access tokens) is revoked:
    a refresh token that is used twice was stolen or replayed, so the second use fails."""
    token = _refresh_token(refresh)
    outstanding = (
        OutstandingToken.objects.select_for_update(of=("self",))
        .select_related("user")
        .filter(jti=token[jwt_settings.JTI_CLAIM])
        .first()
    )
    if outstanding is None or outstanding.user is None or not outstanding.user.is_active:
        raise exceptions.AuthenticationFailed("The refresh token is not valid.", code="token_not_valid")
    _, created = BlacklistedToken.objects.get_or_create(token=outstanding)
    if not created:
        raise exceptions.AuthenticationFailed("The refresh token was already used.", code="token_not_valid")
    return issue_tokens(outstanding.user)


@transaction.atomic
def token_logout(*, user: User, refresh: str = "", all_devices: bool = False) -> int:
    """Revoke one session (the given refresh token) or all of the user's sessions; returns how many."""
    if all_devices:
        tokens = OutstandingToken.objects.filter(user=user, blacklistedtoken__isnull=True)
    else:
        try:
            token = RefreshToken(refresh, verify=False)
        except TokenError as exc:
            raise exceptions.ValidationError({"refresh": ["This is not a refresh token."]}) from exc
        tokens = OutstandingToken.objects.filter(
            user=user, jti=token.get(jwt_settings.JTI_CLAIM, ""), blacklistedtoken__isnull=True
        )
    revoked = 0
    for outstanding in tokens:
        BlacklistedToken.objects.get_or_create(token=outstanding)
        revoked += 1
    audit_record(actor=user, action=AuditAction.API_LOGOUT, obj=user, sessions=revoked)
    return revoked


class SessionJWTAuthentication(JWTAuthentication):
    """``Authorization: Bearer <access token>``; rejected once its session is revoked."""

    www_authenticate_realm = "api"

    def get_validated_token(self, raw_token: bytes) -> AccessToken:
        try:
            return AccessToken(raw_token)
        except TokenError as exc:
            raise exceptions.AuthenticationFailed(
                "The access token is invalid or expired.", code="token_not_valid"
            ) from exc

    def get_user(self, validated_token: AccessToken) -> User:
        session = validated_token.get(SESSION_CLAIM)
        user_id = validated_token.get(jwt_settings.USER_ID_CLAIM)
        outstanding = (
            OutstandingToken.objects.select_related("user")
            .filter(jti=session or "", user_id=user_id, blacklistedtoken__isnull=True)
            .first()
            if session and user_id
            else None
        )
        if outstanding is None or outstanding.user is None or not outstanding.user.is_active:
            raise exceptions.AuthenticationFailed(
                "The session has ended; log in again.", code="session_revoked"
            )
        return outstanding.user
