"""API v1 views: parse the request, call a selector or a service, serialize the answer. No business rules."""

import string

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from cases import permissions, refusals, selectors, services
from cases.api import examples as ex
from cases.api import serializers as s
from cases.api.authentication import token_login, token_logout, token_refresh
from cases.api.base import ApiView, _check_file_sizes, _check_upload_size, _not_found
from cases.api.errors import PayloadTooLarge
from cases.api.permissions import IsReviewer
from cases.api.schema import STORAGE_UNAVAILABLE
from cases.api.throttling import ApiUserThrottle, LoginThrottle, UploadThrottle
from cases.audit import AuditAction, audit_record
from cases.models import CaseStatus, Organization, User

IDEMPOTENCY_HEADER = "Idempotency-Key"
_KEY_CHARS = frozenset(string.ascii_letters + string.digits + "-_.:")


def _me(user: User) -> dict:
    return {
        "id": user.pk,
        "username": user.username,
        "display_name": user.display_name,
        "email": user.email,
        "role": user.role,
        "organizations": permissions.organizations_for(user).order_by("name"),
        "can_submit_cases": user.role in permissions.SUBMITTERS,
        "can_review_cases": user.role in permissions.REVIEWERS,
    }


# Authentication -----------------------------------------------------------------------------------------


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
        examples=[ex.LOGIN, ex.TOKENS],
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
        examples=[ex.TOKENS],
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
        examples=[ex.LOGOUT],
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
            permissions.organizations_for(request.user).order_by("name", "pk"), s.OrganizationSerializer
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
        examples=[ex.PATIENT_CREATE],
    )
    def post(self, request: Request) -> Response:
        data = self.body(s.PatientCreateSerializer)
        try:
            organization = services.patient_organization(
                actor=request.user, organization_id=data.get("organization")
            )
        except Organization.DoesNotExist:
            raise _not_found("organization", "No such organization.") from None
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
        qs = permissions.lesions_visible_to(request.user).order_by("patient_id", "pk")
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
        examples=[ex.LESION_CREATE],
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
        examples=ex.CASE_LIST,
    )
    def get(self, request: Request) -> Response:
        params = self.query(s.CaseFilterSerializer)
        return self.page(selectors.cases_list(user=request.user, filters=params), s.CaseListSerializer)

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
        examples=[ex.CASE_SUBMITTED],
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
        submission = services.case_intake(
            actor=request.user,
            patient=lesion.patient,
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
        examples=ex.CASE_DETAIL,
    )
    def get(self, request: Request, pk: int) -> Response:
        case = selectors.case_detail(request.user, pk)
        audit_record(actor=request.user, action=AuditAction.CASE_VIEW, obj=case, via="api")
        return Response(s.CaseDetailSerializer(case, context={"request": request}).data)


class CaseStatusView(ApiView):
    @extend_schema(
        tags=["cases"],
        summary="The case's status, cheap enough to poll",
        description="Poll every few seconds until `done` is true: the signed report is available (`report.state` "
        "`available`, download it from `report.url`) or the analysis failed. If you only want the AI result, "
        "stop at `awaiting_review`. `reviewed` is not the end: the report is still being signed then.",
        responses=s.CaseStatusSerializer,
        examples=[ex.CASE_STATUS, ex.CASE_STATUS_REPORTED],
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
        examples=[ex.REVIEW_FOLLOW_UP],
    )
    def post(self, request: Request, pk: int) -> Response:
        # The object first: another organization's case is a 404 whatever the body holds.
        case = selectors.case_get(request.user, pk)
        if not permissions.can_review(request.user, case):
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
        examples=ex.CASE_LIST,
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
        created = {k: v for k, v in params.items() if k.startswith("created_")}
        return self.page(
            selectors.with_list_fields(selectors.cases_filter(qs, created)), s.CaseListSerializer
        )


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
