"""API v1 views: parse the request, call a selector or a service, serialize the answer. No business rules."""

import string

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db.models import Count, F, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import Http404, HttpResponse
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.authentication import SessionAuthentication
from rest_framework.generics import GenericAPIView
from rest_framework.pagination import PageNumberPagination
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from cases import refusals, selectors, services
from cases.api import serializers as s
from cases.api.authentication import SessionJWTAuthentication, token_login, token_logout, token_refresh
from cases.api.errors import PayloadTooLarge
from cases.api.permissions import IsPlatformAdminOrReadOnly, IsReviewer
from cases.api.schema import STORAGE_UNAVAILABLE, ApiAutoSchema
from cases.api.throttling import ApiUserThrottle, LoginThrottle, UploadThrottle
from cases.audit import audit_record
from cases.models import Case, CaseStatus, LesionImage, Report, User
from cases.vocabulary import Role
from inference.models import ModelVersion

IDEMPOTENCY_HEADER = "Idempotency-Key"
_KEY_CHARS = frozenset(string.ascii_letters + string.digits + "-_.:")


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


def _me(user: User) -> dict:
    return {
        "id": user.pk,
        "username": user.username,
        "display_name": user.display_name,
        "email": user.email,
        "role": user.role,
        "organizations": selectors.organizations_for(user).order_by("name"),
        "can_submit_cases": user.role in (Role.CLINICIAN, Role.ADMIN),
        "can_review_cases": user.role == Role.DERMATOLOGIST,
    }


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


# Authentication -----------------------------------------------------------------------------------------

_TOKENS_EXAMPLE = OpenApiExample(
    "tokens",
    value={
        "access": "eyJhbGciOiJIUzI1NiIs...",
        "refresh": "eyJhbGciOiJIUzI1NiIs...",
        "access_expires_at": "2026-11-26T10:15:00Z",
        "refresh_expires_at": "2026-12-26T10:00:00Z",
        "user": {
            "id": 3,
            "username": "clinician",
            "display_name": "Casey Clinician",
            "email": "clinician@example.org",
            "role": "clinician",
            "organizations": [{"id": 1, "name": "Demo Skin Clinic", "slug": "demo-clinic"}],
            "can_submit_cases": True,
            "can_review_cases": False,
        },
    },
    response_only=True,
)


def _tokens(pair) -> dict:
    return s.TokenPairSerializer(
        {
            "access": pair.access,
            "refresh": pair.refresh,
            "access_expires_at": pair.access_expires_at,
            "refresh_expires_at": pair.refresh_expires_at,
            "user": _me(pair.user),
        }
    ).data


class _TokenEndpoint(ApiView):
    """Login and refresh take credentials in the body, not a bearer token."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes = [LoginThrottle]

    def get_authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'  # so that bad credentials are 401, not 403


class LoginView(_TokenEndpoint):
    error_responses = {
        "POST": {
            "401": ("Wrong username or password.", [("invalid_credentials", "Wrong username or password.")]),
            "429": (
                "Too many login attempts from this address (`throttled`), or this username is locked from this "
                "network address after repeated failures (`locked_out`); retry after `Retry-After` seconds.",
                [
                    ("throttled", "Request was throttled. Expected available in 12 seconds."),
                    (
                        "locked_out",
                        refusals.LOCKED_USERNAME_AT_ADDRESS.format(minutes=15),
                    ),
                ],
            ),
        }
    }

    @extend_schema(
        tags=["auth"],
        summary="Log in and start a session",
        description="Returns a short-lived access token and a refresh token. Wrong credentials are 401 "
        "`invalid_credentials`. 5 failures pause this username from this network address for 15 minutes (429 "
        "`locked_out`); colleagues on the same address are not affected.",
        request=s.LoginSerializer,
        responses={200: s.TokenPairSerializer},
        examples=[
            OpenApiExample("login", value={"username": "clinician", "password": "..."}, request_only=True),
            _TOKENS_EXAMPLE,
        ],
        auth=[],
    )
    def post(self, request: Request) -> Response:
        data = self.body(s.LoginSerializer)
        pair = token_login(request=request, username=data["username"], password=data["password"])
        return Response(_tokens(pair))


class RefreshView(_TokenEndpoint):
    error_responses = {
        "POST": {
            "401": (
                "The refresh token is invalid, expired, revoked or was used before.",
                [("token_not_valid", "The refresh token is invalid, expired or revoked.")],
            )
        }
    }

    @extend_schema(
        tags=["auth"],
        summary="Exchange the refresh token for a new pair",
        description="The refresh token rotates: the one sent is revoked, with its access tokens. Using a "
        "refresh token twice gives 401.",
        request=s.RefreshSerializer,
        responses={200: s.TokenPairSerializer},
        examples=[_TOKENS_EXAMPLE],
        auth=[],
    )
    def post(self, request: Request) -> Response:
        data = self.body(s.RefreshSerializer)
        return Response(_tokens(token_refresh(refresh=data["refresh"])))


class LogoutView(ApiView):
    @extend_schema(
        tags=["auth"],
        summary="Log out: revoke this session (or all sessions)",
        description="The refresh token and every access token minted from it stop working at once.",
        request=s.LogoutSerializer,
        responses={200: s.LogoutResultSerializer},
        examples=[OpenApiExample("one session", value={"refresh": "eyJhbGciOi..."}, request_only=True)],
    )
    def post(self, request: Request) -> Response:
        data = self.body(s.LogoutSerializer)
        revoked = token_logout(user=request.user, refresh=data["refresh"], all_devices=data["all_devices"])
        return Response({"revoked_sessions": revoked})


class MeView(ApiView):
    @extend_schema(
        tags=["auth"],
        summary="The signed-in user, role and organizations",
        description=(
            "Who the bearer token belongs to: role, organizations and what the role may do (`can_submit_cases`, "
            "`can_review_cases`)."
        ),
        responses=s.MeSerializer,
    )
    def get(self, request: Request) -> Response:
        return Response(s.MeSerializer(_me(request.user)).data)


# Organizations, patients, lesions -----------------------------------------------------------------------


class OrganizationListView(ApiView):
    @extend_schema(
        tags=["organizations"],
        summary="Organizations the user works for",
        description=(
            "The organizations of the signed-in user (clinicians have one; dermatologists may serve several). "
            "Paginated."
        ),
        responses=s.OrganizationSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        return self.page(
            selectors.organizations_for(request.user).order_by("name", "pk"), s.OrganizationSerializer
        )


class PatientListView(ApiView):
    @extend_schema(
        tags=["patients"],
        summary="Patients of the user's organizations",
        description=(
            "Pseudonymous patients of the user's organizations, by reference; `search` matches any part of the "
            "reference (case-insensitive). Paginated."
        ),
        parameters=[s.PatientFilterSerializer],
        responses=s.PatientSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        params = self.query(s.PatientFilterSerializer)
        qs = selectors.patients_search(request.user, params.get("search", "")).order_by("reference", "pk")
        return self.page(qs, s.PatientSerializer)

    @extend_schema(
        tags=["patients"],
        summary="Add a patient (pseudonymous reference, never a name)",
        description=(
            "`reference` is unique per organization (case-insensitive); a duplicate is a 400 on `reference`. "
            "`year_of_birth` is optional: a year from 120 years ago to the current year (a future year, or an age over "
            "120, is a 400 on `year_of_birth`). Users of several organizations must give `organization`."
        ),
        request=s.PatientCreateSerializer,
        responses={201: s.PatientSerializer},
        examples=[
            OpenApiExample(
                "patient",
                value={"reference": "P-0042", "sex": "female", "year_of_birth": 1971},
                request_only=True,
            )
        ],
    )
    def post(self, request: Request) -> Response:
        data = self.body(s.PatientCreateSerializer)
        organizations = selectors.organizations_for(request.user)
        if "organization" in data:
            organization = organizations.filter(pk=data["organization"]).first()
            if organization is None:
                raise _not_found("organization", "No such organization.")
        else:
            candidates = list(organizations[:2])
            if len(candidates) != 1:
                raise s.serializers.ValidationError({"organization": ["Choose the organization."]})
            organization = candidates[0]
        patient = services.patient_create(
            actor=request.user,
            organization=organization,
            reference=data["reference"],
            sex=data["sex"],
            year_of_birth=data.get("year_of_birth"),
        )
        return Response(s.PatientSerializer(patient).data, status=status.HTTP_201_CREATED)


class PatientDetailView(ApiView):
    @extend_schema(
        tags=["patients"],
        summary="One patient",
        description="A patient of one of the user's organizations; another organization's is a 404.",
        responses=s.PatientSerializer,
    )
    def get(self, request: Request, pk: int) -> Response:
        return Response(s.PatientSerializer(selectors.patient_get(request.user, pk)).data)


class LesionListView(ApiView):
    @extend_schema(
        tags=["lesions"],
        summary="Lesions of visible patients",
        description=(
            "Lesions of the patients of the user's organizations, ordered by patient; filter by `patient`. Paginated."
        ),
        parameters=[s.LesionFilterSerializer],
        responses=s.LesionSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        params = self.query(s.LesionFilterSerializer)
        qs = selectors.lesions_visible_to(request.user).order_by("patient_id", "pk")
        if "patient" in params:
            qs = qs.filter(patient_id=params["patient"])
        return self.page(qs, s.LesionSerializer)

    @extend_schema(
        tags=["lesions"],
        summary="Add a lesion to a patient",
        description=(
            "Clinicians and administrators of the patient's organization. `site` is an ISIC anatomical site; `label` a "
            'free description (e.g. "left scapula"). A patient of another organization is a 404 on the field `patient`.'
        ),
        request=s.LesionCreateSerializer,
        responses={201: s.LesionSerializer},
        examples=[
            OpenApiExample(
                "lesion", value={"patient": 12, "site": "torso", "label": "left scapula"}, request_only=True
            )
        ],
    )
    def post(self, request: Request) -> Response:
        data = self.body(s.LesionCreateSerializer)
        try:
            patient = selectors.patient_get(request.user, data["patient"])
        except Http404:
            raise _not_found("patient", "No such patient.") from None
        lesion = services.lesion_create(
            actor=request.user, patient=patient, site=data["site"], label=data["label"]
        )
        return Response(s.LesionSerializer(lesion).data, status=status.HTTP_201_CREATED)


class LesionDetailView(ApiView):
    @extend_schema(
        tags=["lesions"],
        summary="One lesion",
        description="A lesion of a visible patient; another organization's is a 404.",
        responses=s.LesionSerializer,
    )
    def get(self, request: Request, pk: int) -> Response:
        return Response(s.LesionSerializer(selectors.lesion_get(request.user, pk)).data)


# Cases --------------------------------------------------------------------------------------------------


def _with_counts(qs: QuerySet[Case]) -> QuerySet[Case]:
    # A correlated subquery rather than JOIN + GROUP BY: only the page's rows are counted, and the
    # paginator's COUNT(*) drops the unused annotation instead of grouping every case.
    images = LesionImage.objects.filter(case=OuterRef("pk")).order_by().values("case").annotate(n=Count("pk"))
    newest_report = (
        Report.objects.filter(case=OuterRef("pk")).order_by("-created_at", "-pk").values("uid")[:1]
    )
    return qs.annotate(
        image_count=Coalesce(Subquery(images.values("n")), 0), newest_report_uid=Subquery(newest_report)
    )


def _filter_cases(qs: QuerySet[Case], params: dict) -> QuerySet[Case]:
    lookups = {
        "status": "status",
        "risk_band": "risk_band",
        "priority": "priority",
        "organization": "organization_id",
        "patient": "lesion__patient_id",
        "lesion": "lesion_id",
        "created_after": "created_at__gte",
        "created_before": "created_at__lt",
    }
    filters = {lookup: params[name] for name, lookup in lookups.items() if name in params}
    return qs.filter(**filters)


def _ordering(value: str) -> list:
    field = value.lstrip("-")
    if field == "risk":
        expression = (
            F("risk").desc(nulls_last=True) if value.startswith("-") else F("risk").asc(nulls_last=True)
        )
        return [expression, "-created_at", "-pk"]
    return [value, "-pk" if value.startswith("-") else "pk"]


_CASE_EXAMPLE = {
    "id": 42,
    "organization": 1,
    "lesion": 7,
    "patient": 3,
    "patient_reference": "P-0042",
    "status": "awaiting_review",
    "priority": "routine",
    "risk": 0.81,
    "risk_band": "high",
    "ai_assessment": "assessed",
    "model_version": {"id": 2, "name": "teleder-efficientnet-lite", "version": "2026.11"},
    "image_count": 1,
    "report": {"id": None, "url": None, "state": "not_reviewed"},
    "created_at": "2026-11-26T09:12:03Z",
    "updated_at": "2026-11-26T09:12:09Z",
}
_QUALITY_EXAMPLE = {
    "blur": {"value": 41.2, "threshold": 4.5, "passed": True},
    "brightness": {"value": 171.0, "threshold": 60.0, "passed": True},
    "clipped": {"value": 0.0, "threshold": 0.45, "passed": True},
    "min_side": {"value": 768.0, "threshold": 96.0, "passed": True},
    "aspect": {"value": 1.33, "threshold": 3.0, "passed": True},
}
_ASSESSED_EXAMPLE = {
    "status": "assessed",
    "reasons": [],
    "explanation": "",
    "quality": _QUALITY_EXAMPLE,
    "ood_score": 0.71,
}
_NOT_ASSESSED_EXAMPLE = {
    "status": "not_assessed",
    "reasons": ["too_dark"],
    "explanation": "The image is too dark: most of the lesion is in shadow. Please take a new, sharp, well-lit "
    "dermoscopic image of the lesion and add it to the case.",
    "quality": {**_QUALITY_EXAMPLE, "brightness": {"value": 38.0, "threshold": 60.0, "passed": False}},
    "ood_score": 1.9,
}
_CASE_DETAIL_EXAMPLE = {
    **_CASE_EXAMPLE,
    "clinical_notes": "Grew in 3 months, itches.",
    "submitted_by": {"id": 3, "display_name": "Casey Clinician"},
    "age_at_submission": 55,
    "sex_at_submission": "female",
    "site_at_submission": "torso",
    "failure_reason": "",
    "analysed_at": "2026-11-26T09:12:09Z",
    "images": [
        {
            "id": 101,
            "position": 0,
            "width": 1024,
            "height": 768,
            "content_type": "image/jpeg",
            "size_bytes": 231004,
            "sha256": "9f2c...",
            "predictions": [
                {
                    "model_version": {"id": 2, "name": "teleder-efficientnet-lite", "version": "2026.11"},
                    "probability": 0.81,
                    "risk_band": "high",
                    "assessment": _ASSESSED_EXAMPLE,
                    "member_probabilities": {"lite0": 0.77, "lite1": 0.84, "lite2": 0.82},
                    "class_probabilities": {},
                    "created_at": "2026-11-26T09:12:09Z",
                }
            ],
        }
    ],
    "reviews": [],
    "reports": [],
}
_NOT_ASSESSED_IMAGE = {
    **_CASE_DETAIL_EXAMPLE["images"][0],
    "id": 102,
    "position": 1,
    "predictions": [
        {
            **_CASE_DETAIL_EXAMPLE["images"][0]["predictions"][0],
            "probability": None,
            "risk_band": "",
            "assessment": _NOT_ASSESSED_EXAMPLE,
            "member_probabilities": {},
        }
    ],
}
CASE_DETAIL_EXAMPLES = [
    OpenApiExample("case awaiting review", value=_CASE_DETAIL_EXAMPLE, response_only=True),
    OpenApiExample(
        "partly assessed (one image too dark)",
        value={
            **_CASE_DETAIL_EXAMPLE,
            "ai_assessment": "partial",
            "image_count": 2,
            "images": [_CASE_DETAIL_EXAMPLE["images"][0], _NOT_ASSESSED_IMAGE],
        },
        response_only=True,
    ),
    OpenApiExample(
        "AI could not assess (no risk, still in the review queue)",
        value={
            **_CASE_DETAIL_EXAMPLE,
            "risk": None,
            "risk_band": "",
            "ai_assessment": "not_assessed",
            "images": [{**_NOT_ASSESSED_IMAGE, "id": 101, "position": 0}],
        },
        response_only=True,
    ),
]
CASE_LIST_EXAMPLES = [
    OpenApiExample(
        "one page",
        value={"count": 1, "next": None, "previous": None, "results": [_CASE_EXAMPLE]},
        response_only=True,
    )
]


_IDEMPOTENCY_PARAMETER = OpenApiParameter(
    IDEMPOTENCY_HEADER,
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description="Client-chosen key (1-64 characters: letters, digits, `-_.:`), e.g. a UUID made when the user "
    "tapped Submit. Repeating the request with the same key returns the case created the first time "
    "(200 instead of 201, header `Idempotent-Replayed: true`) instead of a second case, also when the retries "
    "arrive at the same moment. A header with an empty or malformed key is refused (400, field "
    "`Idempotency-Key`); leave the header out to submit without a key.",
)


class CaseListView(ApiView):
    parser_classes = [MultiPartParser, FormParser]
    error_responses = {"POST": STORAGE_UNAVAILABLE}

    def get_throttles(self) -> list:
        throttles = super().get_throttles()
        return [*throttles, UploadThrottle()] if self.request.method == "POST" else throttles

    @extend_schema(
        tags=["cases"],
        summary="Cases of the user's organizations",
        description="Filter by status, risk band, priority, organization, patient, lesion and creation time; "
        "order by creation, update or risk.",
        parameters=[s.CaseFilterSerializer],
        responses=s.CaseListSerializer(many=True),
        examples=CASE_LIST_EXAMPLES,
    )
    def get(self, request: Request) -> Response:
        params = self.query(s.CaseFilterSerializer)
        qs = _filter_cases(_with_counts(selectors.cases_visible_to(request.user)), params)
        return self.page(qs.order_by(*_ordering(params["ordering"])), s.CaseListSerializer)

    @extend_schema(
        tags=["cases"],
        summary="Submit a case with its images (multipart)",
        description="One `multipart/form-data` request with the lesion, the clinical notes, the priority and 1-10 "
        "`images` parts. The images are validated and re-encoded; the AI analysis starts once stored. With an "
        "`Idempotency-Key` a retried request returns the first case (200) instead of creating another. With "
        "`draft=true` the case is a draft: add images, then submit it explicitly (docs/api.md).",
        parameters=[_IDEMPOTENCY_PARAMETER],
        request={"multipart/form-data": s.CaseCreateSerializer},
        responses={201: s.CaseDetailSerializer, 200: s.CaseDetailSerializer},
        examples=[
            OpenApiExample(
                "submitted",
                value={
                    **_CASE_DETAIL_EXAMPLE,
                    "status": "submitted",
                    "risk": None,
                    "risk_band": "",
                    "model_version": None,
                    "analysed_at": None,
                    "images": [{**_CASE_DETAIL_EXAMPLE["images"][0], "predictions": []}],
                },
                response_only=True,
                status_codes=["201", "200"],
            )
        ],
    )
    def post(self, request: Request) -> Response:
        _check_upload_size(request)
        raw_key = request.headers.get(IDEMPOTENCY_HEADER)  # None: no header; "": a header with no key
        key = (raw_key or "").strip()
        if raw_key is not None and (not key or len(key) > 64 or not set(key) <= _KEY_CHARS):
            raise s.serializers.ValidationError(
                {IDEMPOTENCY_HEADER: ["Use 1-64 letters, digits or -_.: (a UUID works)."]}
            )
        values = self.body(s.CaseCreateSerializer)
        _check_file_sizes(values["images"])
        try:
            lesion = selectors.lesion_get(request.user, values["lesion"])
        except Http404:
            raise _not_found("lesion", "No such lesion.") from None
        submission = services.case_submit(
            actor=request.user,
            lesion=lesion,
            images=values["images"],
            clinical_notes=values["clinical_notes"],
            priority=values["priority"],
            submission_key=key,
            draft=values["draft"],
        )
        case = selectors.case_detail(request.user, submission.case.pk)
        headers = {"Location": request.build_absolute_uri(reverse("api:case-detail", kwargs={"pk": case.pk}))}
        if not submission.created:
            headers["Idempotent-Replayed"] = "true"
        return Response(
            s.CaseDetailSerializer(case, context={"request": request}).data,
            status=status.HTTP_201_CREATED if submission.created else status.HTTP_200_OK,
            headers=headers,
        )


class CaseDetailView(ApiView):
    @extend_schema(
        tags=["cases"],
        summary="A case with its images, AI results per image and member, reviews and reports",
        description=(
            "The full case: patient and lesion at submission, every image with the predictions of each model "
            "version (newest first) and each ensemble member, the reviews (a correction supersedes the one "
            "before) and the signed reports, plus `report`, the newest report's state. Viewing is recorded in the"
            " audit trail."
        ),
        responses=s.CaseDetailSerializer,
        examples=CASE_DETAIL_EXAMPLES,
    )
    def get(self, request: Request, pk: int) -> Response:
        case = selectors.case_detail(request.user, pk)
        audit_record(actor=request.user, action="case.view", obj=case, via="api")
        return Response(s.CaseDetailSerializer(case, context={"request": request}).data)


class CaseStatusView(ApiView):
    @extend_schema(
        tags=["cases"],
        summary="The case's status, cheap enough to poll",
        description="Poll every few seconds until `done` is true: the signed report is available (`report.state` "
        "`available`, download it from `report.url`) or the analysis failed. If you only want the AI result, "
        "stop at `awaiting_review`. `reviewed` is not the end: the report is still being signed then.",
        responses=s.CaseStatusSerializer,
        examples=[
            OpenApiExample(
                "analysed",
                value={
                    "id": 42,
                    "status": "awaiting_review",
                    "risk": 0.81,
                    "risk_band": "high",
                    "failure_reason": "",
                    "done": False,
                    "report": {"id": None, "url": None, "state": "not_reviewed"},
                    "analysis_delayed": False,
                    "updated_at": "2026-11-26T09:12:09Z",
                },
                response_only=True,
            ),
            OpenApiExample(
                "report available",
                value={
                    "id": 42,
                    "status": "reported",
                    "risk": 0.81,
                    "risk_band": "high",
                    "failure_reason": "",
                    "done": True,
                    "report": {
                        "id": "7d0c3c1e-1f0b-4a53-9d1e-2f5b8f7a6c21",
                        "url": "https://teleder.example.org/api/v1/reports/7d0c3c1e-1f0b-4a53-9d1e-2f5b8f7a6c21/download/",
                        "state": "available",
                    },
                    "analysis_delayed": False,
                    "updated_at": "2026-11-26T10:02:41Z",
                },
                response_only=True,
            ),
        ],
    )
    def get(self, request: Request, pk: int) -> Response:
        case = selectors.case_get(request.user, pk)
        return Response(s.CaseStatusSerializer(case, context={"request": request}).data)


class CaseImagesView(ApiView):
    parser_classes = [MultiPartParser, FormParser]
    pagination_class = None  # answers the added images as a plain list
    error_responses = {"POST": STORAGE_UNAVAILABLE}
    throttle_classes = [ApiUserThrottle, UploadThrottle]

    @extend_schema(
        tags=["cases"],
        summary="Add images to a draft (or to a case returned for better images)",
        description="Only the submitting clinician, while the case is a draft or needs images; then "
        "`POST /cases/{id}/submit/`. A submitted case never changes its images (409).",
        request={"multipart/form-data": s.ImagesAddSerializer},
        responses={201: s.ImageSerializer(many=True)},
    )
    def post(self, request: Request, pk: int) -> Response:
        _check_upload_size(request)
        case = selectors.case_get(request.user, pk)
        values = self.body(s.ImagesAddSerializer)
        _check_file_sizes(values["images"])
        stored = services.case_add_images(actor=request.user, case=case, images=values["images"])
        return Response(s.ImageSerializer(stored, many=True).data, status=status.HTTP_201_CREATED)


class CaseReviewView(ApiView):
    error_responses = {
        "POST": {
            "409": (
                "The case already has a review (`fields.existing_review` holds its id), or its status does not "
                "allow a review now.",
                [
                    (
                        "already_reviewed",
                        "This case was already reviewed (review 12 by Dr Demo). To change the report, use "
                        "'Correct this report' and give a reason.",
                    ),
                    ("illegal_transition", "A case that is analysing cannot become reviewed."),
                ],
            )
        }
    }

    @extend_schema(
        tags=["review"],
        summary="Submit the dermatologist's review",
        description="Moves the case to reviewed and starts the signed report. Contradictory reviews are 400 "
        "with a field message (see docs/api.md). A case that already has a review is 409 `already_reviewed` "
        "with `existing_review` (its id): to change an issued report, POST a correction to "
        "`/cases/{id}/corrections/`. 409 `illegal_transition` if the case is not awaiting review.",
        request=s.ReviewCreateSerializer,
        responses={201: s.ReviewSerializer},
        examples=[
            OpenApiExample(
                "follow-up",
                value={
                    "diagnosis": "nv",
                    "malignant": False,
                    "management": "follow_up",
                    "follow_up_months": 6,
                },
                request_only=True,
            )
        ],
    )
    def post(self, request: Request, pk: int) -> Response:
        # The object first: another organization's case is a 404 whatever the body holds.
        case = selectors.case_get(request.user, pk)
        if not selectors.can_review(request.user, case):
            raise PermissionDenied("Only a dermatologist serving this organization can review this case.")
        data = self.body(s.ReviewCreateSerializer)
        review = services.review_submit(
            actor=request.user,
            case=case,
            diagnosis=data["diagnosis"],
            malignant=data["malignant"],
            management=data["management"],
            follow_up_months=data.get("follow_up_months"),
            notes=data["notes"],
            agrees_with_ai=data["agrees_with_ai"],
            justification=data["justification"],
        )
        review = type(review).objects.select_related("reviewer").get(pk=review.pk)
        return Response(s.ReviewSerializer(review).data, status=status.HTTP_201_CREATED)


class QueueView(ApiView):
    permission_classes = [IsAuthenticated, IsReviewer]

    @extend_schema(
        tags=["review"],
        summary="The dermatologist's review queue: urgent first, then AI risk, then waiting time",
        description=(
            "Dermatologists only (403 for other roles). Cases of the organizations they serve, awaiting review by"
            " default (`status` also takes `reviewed` or `reported`), in the web queue's order: priority (urgent "
            "first), then AI risk (a case the AI could not assess counts as the highest), then the longest "
            "waiting since submission; filter by organization, risk band, priority and creation time. Paginated."
        ),
        parameters=[s.QueueFilterSerializer],
        responses=s.CaseListSerializer(many=True),
        examples=CASE_LIST_EXAMPLES,
    )
    def get(self, request: Request) -> Response:
        params = self.query(s.QueueFilterSerializer)
        qs = selectors.review_queue(
            request.user,
            organization=params.get("organization"),
            band=params.get("risk_band"),
            status=params.get("status") or CaseStatus.AWAITING_REVIEW,
            priority=params.get("priority"),
        )
        qs = _filter_cases(_with_counts(qs), {k: v for k, v in params.items() if k.startswith("created_")})
        return self.page(qs, s.CaseListSerializer)


# Reports ------------------------------------------------------------------------------------------------


class ReportDetailView(ApiView):
    @extend_schema(
        tags=["reports"],
        summary="A signed report's details",
        description=(
            "The report's signer, signing time, SHA-256 of the PDF, whether it is an addendum (and which report it "
            "supersedes) and its download URL."
        ),
        responses=s.ReportSerializer,
    )
    def get(self, request: Request, uid: str) -> Response:
        report = selectors.report_get(request.user, uid)
        return Response(s.ReportSerializer(report, context={"request": request}).data)


class ReportDownloadView(ApiView):
    @extend_schema(
        tags=["reports"],
        summary="Download the signed PDF",
        description=(
            "The signed PDF (PAdES) as stored, with its SHA-256 in `X-Report-SHA256`. Downloads are recorded in "
            "the audit trail."
        ),
        responses={
            (200, "application/pdf"): OpenApiResponse(OpenApiTypes.BINARY, description="The signed PDF.")
        },
    )
    def get(self, request: Request, uid: str) -> HttpResponse:
        from cases.reports.services import report_download  # the reports area checks and audits it

        download = report_download(actor=request.user, uid=uid)
        response = HttpResponse(download.content, content_type="application/pdf")
        response["Content-Disposition"] = f'attachment; filename="{download.filename}"'
        response["X-Report-SHA256"] = download.report.sha256
        return response


class ReportVerifyView(ApiView):
    parser_classes = [MultiPartParser, FormParser]
    throttle_classes = [ApiUserThrottle, UploadThrottle]

    @extend_schema(
        tags=["reports"],
        summary="Check a report PDF's signature",
        description="Upload a PDF as `file`. 200 with `valid` true only for an intact report signed by this "
        "platform and identical to its stored copy; 200 with `valid` false and a `status` for any other PDF; "
        "400 `invalid` with the reason on the field `file` (an empty file, or not a PDF) or 413 "
        "`payload_too_large` when the upload is not a PDF that can be checked at all.",
        request={"multipart/form-data": s.ReportVerifySerializer},
        responses={200: s.VerificationSerializer},
    )
    def post(self, request: Request) -> Response:
        from cases.reports import verify  # the reports area owns verification

        _check_upload_size(request)
        data = self.body(s.ReportVerifySerializer)
        content = verify.read_upload(data["file"])
        result = (
            content if isinstance(content, verify.VerificationResult) else verify.verify_report_pdf(content)
        )
        if result.status == verify.TOO_LARGE:
            raise PayloadTooLarge(result.message)
        if result.status in verify.INPUT_PROBLEMS:
            raise s.serializers.ValidationError({"file": [result.message]}, code=result.status)
        return Response(s.VerificationSerializer(result.as_dict()).data)


# Model versions -----------------------------------------------------------------------------------------


class ModelVersionListView(ApiView):
    permission_classes = [IsPlatformAdminOrReadOnly]

    @extend_schema(
        tags=["models"],
        summary="Registered model versions",
        description=(
            "Every registered AI model version, newest first, with its status (one is `active`), threshold and "
            "manifest. Read-only for everyone but administrators."
        ),
        responses=s.ModelVersionSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        return self.page(ModelVersion.objects.order_by("-created_at", "-pk"), s.ModelVersionSerializer)


class ModelVersionDetailView(ApiView):
    permission_classes = [IsPlatformAdminOrReadOnly]

    @extend_schema(
        tags=["models"],
        summary="One model version",
        description="One registered model version with its manifest (members, risk bands, threshold).",
        responses=s.ModelVersionSerializer,
    )
    def get(self, request: Request, pk: int) -> Response:
        return Response(s.ModelVersionSerializer(_model_version(pk)).data)


class ModelVersionActivateView(ApiView):
    permission_classes = [IsPlatformAdminOrReadOnly]

    @extend_schema(
        tags=["models"],
        summary="Make this model version the active one (administrators)",
        description=(
            "Platform administrators only (403 otherwise). New cases are analysed with this version from now on; the "
            "previous active version is retired, not deleted. Recorded in the audit trail."
        ),
        request=None,
        responses={200: s.ModelVersionSerializer},
    )
    def post(self, request: Request, pk: int) -> Response:
        version = _model_version(pk)
        from inference.registry import model_activate  # written by the inference area

        activated = model_activate(name=version.name, version=version.version, actor=request.user)
        return Response(s.ModelVersionSerializer(activated).data)


def _model_version(pk: int) -> ModelVersion:
    try:
        return ModelVersion.objects.get(pk=pk)
    except ModelVersion.DoesNotExist:
        raise Http404("No such model version.") from None
