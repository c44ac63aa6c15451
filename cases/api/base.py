"""The base of every API v1 view: authentication, throttling, pagination, validated query and body, and the
upload size checks (413 before parsing). Each app's API views (cases, inference, interop, learning) build on
``ApiView``."""

from django.conf import settings
from django.db.models import QuerySet
from django.http import Http404
from rest_framework.authentication import SessionAuthentication
from rest_framework.generics import GenericAPIView
from rest_framework.pagination import PageNumberPagination
from rest_framework.parsers import JSONParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from cases import refusals
from cases.api import serializers as s
from cases.api.authentication import SessionJWTAuthentication
from cases.api.errors import PayloadTooLarge
from cases.api.schema import ApiAutoSchema
from cases.api.throttling import ApiUserThrottle


class Pagination(PageNumberPagination):
    """``page`` (1, 2, ...) and ``page_size`` (1-100, default 25). A value that is not one of these is a 400
    naming the parameter, never silently replaced; a page past the last one is a 404."""

    page_size = 25
    page_size_query_param = "page_size"
    max_page_size = 100

    def _positive(self, request: Request, name: str, maximum: int | None = None) -> int | None:
        raw = request.query_params.get(name)
        if raw is None:
            return None
        try:
            value = int(raw)
        except ValueError:
            value = 0
        if value < 1 or (maximum is not None and value > maximum):
            upper = f" from 1 to {maximum}" if maximum else " of 1 or more"
            raise s.serializers.ValidationError({name: [f"Give a whole number{upper}."]})
        return value

    def get_page_size(self, request: Request) -> int:
        return self._positive(request, self.page_size_query_param, self.max_page_size) or self.page_size

    def paginate_queryset(self, queryset, request, view=None):
        self._positive(request, self.page_query_param)
        return super().paginate_queryset(queryset, request, view)

    def get_schema_operation_parameters(self, view) -> list:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            parameter["schema"]["minimum"] = 1
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"]["maximum"] = self.max_page_size
                parameter["description"] = "Results per page, 1-100 (default 25); anything else is a 400."
            else:
                parameter["description"] = (
                    "Page number from 1; 0 or a non-number is a 400, past the last a 404."
                )
        return parameters


class ApiView(GenericAPIView):
    """Base of every v1 endpoint: bearer token (or the browser session, for Swagger UI), per-user throttle."""

    authentication_classes = [SessionJWTAuthentication, SessionAuthentication]
    permission_classes = [IsAuthenticated]
    throttle_classes = [ApiUserThrottle]
    parser_classes = [JSONParser]
    pagination_class = Pagination
    metadata_class = None  # OPTIONS answers 405: the OpenAPI schema describes every endpoint
    schema = ApiAutoSchema()

    def query(self, serializer_class: type) -> dict:
        """Validated query parameters (400 in the error format for bad ones)."""
        params = serializer_class(data=self.request.query_params)
        params.is_valid(raise_exception=True)
        return params.validated_data

    def body(self, serializer_class: type) -> dict:
        data = serializer_class(data=self.request.data)
        data.is_valid(raise_exception=True)
        return data.validated_data

    def page(self, queryset: QuerySet, serializer_class: type) -> Response:
        items = self.paginate_queryset(queryset)
        return self.get_paginated_response(
            serializer_class(items, many=True, context={"request": self.request}).data
        )


def _not_found(field: str, message: str) -> Http404:
    exc = Http404(message)
    exc.field = field
    return exc


def _check_upload_size(request: Request) -> None:
    """413 before and after parsing: the whole body, then each file and their sum."""
    limit = settings.TELEDER_MAX_CASE_BYTES
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > limit + 1024 * 1024:  # room for the multipart framing and the text fields
        raise PayloadTooLarge(refusals.REQUEST_TOO_LARGE.format(limit=refusals.megabytes(limit)))


def _check_file_sizes(files: list) -> None:
    per_file = settings.TELEDER_MAX_IMAGE_BYTES
    for upload in files:
        if upload.size > per_file:
            name = "".join(ch for ch in str(upload.name)[-80:] if ch.isprintable())
            raise PayloadTooLarge(f"{refusals.image_too_large(per_file)} ({name})")
    if sum(upload.size for upload in files) > settings.TELEDER_MAX_CASE_BYTES:
        raise PayloadTooLarge(refusals.CASE_TOO_LARGE)
