"""OpenAPI generation: every operation documents the one error format for each error status it can return."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiExample, OpenApiResponse

from cases.api.serializers import ErrorSerializer

_ERRORS = {
    "400": ("Invalid input: `fields` holds the messages per field.", "invalid", "Choose a valid option."),
    "401": ("Missing, invalid, expired or revoked access token.", "not_authenticated", "Log in again."),
    "403": ("Signed in, but the role does not allow this.", "forbidden", "You cannot do this."),
    "404": ("No such object, or it belongs to another organization.", "not_found", "No such case."),
    "409": ("The case's status does not allow this now.", "illegal_transition", "A reported case cannot..."),
    "413": ("The body or one file is larger than the limit.", "payload_too_large", "The file is too large."),
    "415": ("Wrong Content-Type for this endpoint.", "unsupported_media_type", "Unsupported media type."),
    "429": ("Too many requests; retry after `Retry-After` seconds.", "throttled", "Request was throttled."),
}
_WRITE_ONLY = {"409", "413", "415"}


def _error_response(status: str) -> OpenApiResponse:
    description, code, message = _ERRORS[status]
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
        ],
    )


class ApiAutoSchema(AutoSchema):
    """Adds the documented error responses to each operation (reads cannot give 409/413/415)."""

    def _get_response_bodies(self, direction: str = "response") -> dict:
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        for status in _ERRORS:
            if status in responses or (status in _WRITE_ONLY and self.method in ("GET", "HEAD")):
                continue
            responses[status] = self._get_response_for_code(_error_response(status), status)
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
