"""One JSON error format for every API error: ``{"error": {"code", "message", "fields"}}``.

DRF's exception handler is replaced (``REST_FRAMEWORK["EXCEPTION_HANDLER"]``) so that serializer errors,
service ``ValidationError``s, permission and lookup errors, throttling, parsing and content-type errors all
come out in the same shape. Business-rule errors keep the service's message per field.
"""

import math
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import set_rollback

from cases.services import IllegalTransition, StorageUnavailable

NON_FIELD = "non_field_errors"

_CODES = {
    400: "invalid",
    401: "not_authenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "throttled",
    503: "storage_unavailable",
}


class Conflict(exceptions.APIException):
    """The request is valid but the object's current state does not allow it (e.g. an illegal transition)."""

    status_code = status.HTTP_409_CONFLICT
    default_detail = "The object's current state does not allow this."
    default_code = "conflict"


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "payload_too_large"


def error_body(code: str, message: str, fields: dict[str, list[str]] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "fields": fields or {}}}


def _flatten(detail: Any) -> list[str]:
    if isinstance(detail, dict):
        return [f"{key}: {msg}" for key, value in detail.items() for msg in _flatten(value)]
    if isinstance(detail, list | tuple):
        return [msg for item in detail for msg in _flatten(item)]
    return [str(detail)]


def _fields_from_detail(detail: Any) -> dict[str, list[str]]:
    if isinstance(detail, dict):
        return {str(key): _flatten(value) for key, value in detail.items()}
    return {NON_FIELD: _flatten(detail)}


def _fields_from_django(exc: DjangoValidationError) -> dict[str, list[str]]:
    if hasattr(exc, "error_dict"):
        return {
            (NON_FIELD if key == "__all__" else key): [str(m) for m in messages]
            for key, messages in exc.message_dict.items()
        }
    return {NON_FIELD: [str(m) for m in exc.messages]}


def _message(fields: dict[str, list[str]], fallback: str) -> str:
    for messages in fields.values():
        if messages:
            return messages[0]
    return fallback


def exception_handler(exc: Exception, context: dict) -> Response | None:
    """DRF exception handler producing the one error format; unknown exceptions stay 500 (handled by
    ``teleder.errors.server_error``, which answers in the same JSON shape)."""
    headers: dict[str, str] = {}
    if isinstance(exc, Http404):
        code, http, message, fields = "not_found", 404, str(exc) or "Not found.", {}
        field = getattr(exc, "field", None)
        if field:
            fields = {field: [message]}
    elif isinstance(exc, DjangoPermissionDenied):
        http, code = 403, "forbidden"
        message, fields = str(exc) or "You do not have permission to do this.", {}
    elif isinstance(exc, IllegalTransition):
        http, code = 409, getattr(exc, "code", None) or "illegal_transition"
        fields = _fields_from_django(exc)
        message = _message(fields, "The case's status does not allow this.")
        if getattr(exc, "review_id", None) is not None:  # ReviewAlreadyExists: say which review
            fields = {"existing_review": [str(exc.review_id)]}
    elif isinstance(exc, DjangoValidationError):
        http, code = 400, "invalid"
        fields = _fields_from_django(exc)
        message = _message(fields, "The request is not valid.")
    elif isinstance(exc, StorageUnavailable):
        http, code, message, fields = 503, "storage_unavailable", str(exc) or StorageUnavailable.message, {}
        headers["Retry-After"] = "60"
    elif isinstance(exc, RequestDataTooBig):
        http, code, message, fields = 413, "payload_too_large", "The request body is too large.", {}
    elif isinstance(exc, exceptions.APIException):
        http = exc.status_code
        if isinstance(exc, exceptions.ValidationError):
            code = "invalid"
            fields = _fields_from_detail(exc.detail)
            message = _message(fields, "The request is not valid.")
        else:
            codes = exc.get_codes()
            code = codes if isinstance(codes, str) else _CODES.get(http, "error")
            if isinstance(exc, exceptions.PermissionDenied):
                code = "forbidden"
            detail = exc.detail.get("detail", exc.detail) if isinstance(exc.detail, dict) else exc.detail
            message, fields = " ".join(_flatten(detail)), {}
        if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
            authenticate_header = getattr(exc, "auth_header", None)
            if authenticate_header:
                headers["WWW-Authenticate"] = authenticate_header
        if getattr(exc, "wait", None):
            headers["Retry-After"] = str(max(1, math.ceil(exc.wait)))
    else:
        return None
    if http == 401 and "WWW-Authenticate" not in headers:
        headers["WWW-Authenticate"] = 'Bearer realm="api"'
    set_rollback()
    return Response(error_body(code, message, fields), status=http, headers=headers)
