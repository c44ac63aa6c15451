"""OpenAPI generation: every operation documents the one error format for each error status it can return."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiExample, OpenApiResponse

from cases.api.serializers import ErrorSerializer

# status: (description, [(code, example message), ...]). Every code the server sends for a status is listed,
# so that clients can rely on them; tests/api/contract.py checks each answer of the API tests against these.
_ERRORS: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "400": (
        "Invalid input: `fields` holds the messages per field.",
        [("invalid", "Choose a valid option."), ("parse_error", "JSON parse error - Expecting value.")],
    ),
    "401": (
        "Missing, invalid, expired or revoked access token.",
        [
            ("not_authenticated", "Authentication credentials were not provided."),
            ("token_not_valid", "Given token not valid for any token type"),
            ("authentication_failed", "Incorrect authentication credentials."),
            ("session_revoked", "The session has ended; log in again."),
        ],
    ),
    "403": ("Signed in, but the role does not allow this.", [("forbidden", "You cannot do this.")]),
    "404": ("No such object, or it belongs to another organization.", [("not_found", "No such case.")]),
    "409": (
        "The case's status does not allow this now.",
        [("illegal_transition", "A case that is reported cannot become analysing.")],
    ),
    "413": (
        "The body or one file is larger than the limit.",
        [("payload_too_large", "The file is larger than 15 MB. (front.jpg)")],
    ),
    "415": ("Wrong Content-Type for this endpoint.", [("unsupported_media_type", "Unsupported media type.")]),
    "429": (
        "Too many requests; retry after `Retry-After` seconds.",
        [("throttled", "Request was throttled. Expected available in 12 seconds.")],
    ),
}
_WRITE_ONLY = {"409", "413", "415"}
# Extra or different error answers of an operation: a view's ``error_responses = {"POST": {status: ...}}``.
STORAGE_UNAVAILABLE = {
    "503": (
        "The image store refused the write; nothing was stored. Retry after `Retry-After` seconds.",
        [
            (
                "storage_unavailable",
                "The image store is unavailable, so nothing was stored. Try again in a few minutes.",
            )
        ],
    )
}


def _error_response(description: str, examples: list[tuple[str, str]], status: str) -> OpenApiResponse:
    return OpenApiResponse(
        response=ErrorSerializer,
        description=description,
        examples=[
            OpenApiExample(
                code,
                value={"error": {"code": code, "message": message, "fields": {}}},
                status_codes=[status],
                response_only=True,
            )
            for code, message in examples
        ],
    )


class ApiAutoSchema(AutoSchema):
    """Adds the documented error responses to each operation (reads cannot give 409/413/415), and the view's
    own ``error_responses`` (e.g. login's 401 `invalid_credentials`, a submit's 503 `storage_unavailable`)."""

    def _get_response_bodies(self, direction: str = "response") -> dict:
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        own = getattr(self.view, "error_responses", {}).get(self.method, {})
        for status, (description, examples) in {**_ERRORS, **own}.items():
            if status in responses or (
                status in _WRITE_ONLY and status not in own and self.method in ("GET", "HEAD")
            ):
                continue
            responses[status] = self._get_response_for_code(
                _error_response(description, examples, status), status
            )
        return responses


class SessionJWTScheme(OpenApiAuthenticationExtension):
    target_class = "cases.api.authentication.SessionJWTAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema: AutoSchema) -> dict:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "The `access` token from `/api/v1/auth/login/` or `/api/v1/auth/refresh/`.",
        }
