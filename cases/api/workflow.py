"""API v1 endpoints of the clinical workflow: corrections, drafts, requests for better images, turnaround.

Thin like ``cases.api.views``: parse, call a selector or a service, serialize. Kept apart from that module so
that the workflow and the API contract can change without stepping on each other.
"""

from django.core.exceptions import PermissionDenied
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from cases import permissions, selectors, services
from cases.api import serializers as s
from cases.api.views import ApiView
from cases.models import Review


class CaseCorrectionView(ApiView):
    @extend_schema(
        tags=["review"],
        summary="Correct the issued report of a case (explicit, with a reason)",
        description="A new review that supersedes the current one; the report task issues a signed addendum "
        "that prints the reason. The same consistency rules as a review (400 with a field message). 409 if "
        "the case has no issued report yet (still awaiting review, or its report is being generated).",
        request=s.CorrectionCreateSerializer,
        responses={201: s.ReviewSerializer},
        examples=[
            OpenApiExample(
                "correction",
                value={
                    "reason": "Histology came back: basal cell carcinoma, not a naevus.",
                    "diagnosis": "bcc",
                    "management": "biopsy",
                },
                request_only=True,
            )
        ],
    )
    def post(self, request: Request, pk: int) -> Response:
        case = selectors.case_get(request.user, pk)
        if not permissions.can_review(request.user, case):
            raise PermissionDenied("Only a dermatologist serving this organization can correct this report.")
        data = self.body(s.CorrectionCreateSerializer)
        review = services.review_correct(
            actor=request.user,
            case=case,
            reason=data["reason"],
            diagnosis=data["diagnosis"],
            malignant=data["malignant"],
            management=data["management"],
            follow_up_months=data.get("follow_up_months"),
            notes=data["notes"],
            agrees_with_ai=data["agrees_with_ai"],
            justification=data["justification"],
        )
        review = Review.objects.select_related("reviewer").get(pk=review.pk)
        return Response(s.ReviewSerializer(review).data, status=status.HTTP_201_CREATED)


class CaseSubmitView(ApiView):
    @extend_schema(
        tags=["cases"],
        summary="Submit a draft (or resubmit a case returned for better images)",
        description="Starts the AI analysis. 400 `images` without any image (or, after a request for images, "
        "without a new one); 409 if the case is neither a draft nor waiting for images. Only the submitting "
        "clinician.",
        request=None,
        responses={200: s.CaseDetailSerializer},
    )
    def post(self, request: Request, pk: int) -> Response:
        case = selectors.case_get(request.user, pk)
        services.case_submit_for_analysis(actor=request.user, case=case)
        case = selectors.case_detail(request.user, pk)
        return Response(s.CaseDetailSerializer(case, context={"request": request}).data)


class CaseImageRequestView(ApiView):
    @extend_schema(
        tags=["review"],
        summary="Return a case to the clinician for better images",
        description="The case must be awaiting review; it becomes `needs_images` and the clinician is notified "
        "(e-mail, no patient data). The clinician adds images (`POST /cases/{id}/images/`) and resubmits "
        "(`POST /cases/{id}/submit/`).",
        request=s.ImageRequestCreateSerializer,
        responses={201: s.ImageRequestSerializer},
        examples=[OpenApiExample("blurred", value={"reason": "blurred", "note": ""}, request_only=True)],
    )
    def post(self, request: Request, pk: int) -> Response:
        case = selectors.case_get(request.user, pk)
        if not permissions.can_review(request.user, case):
            raise PermissionDenied("Only a dermatologist serving this organization can request images.")
        data = self.body(s.ImageRequestCreateSerializer)
        image_request = services.case_request_images(
            actor=request.user, case=case, reason=data["reason"], note=data["note"]
        )
        return Response(s.ImageRequestSerializer(image_request).data, status=status.HTTP_201_CREATED)


class TurnaroundView(ApiView):
    @extend_schema(
        tags=["review"],
        summary="Turnaround per organization: median and 90th percentile hours from submission to report",
        description="Over first reports signed in the last `days` days (default 7), for the organizations the "
        "user works for.",
        parameters=[s.TurnaroundFilterSerializer],
        responses=s.TurnaroundResponseSerializer,
    )
    def get(self, request: Request) -> Response:
        params = self.query(s.TurnaroundFilterSerializer)
        rows = selectors.turnaround_by_organization(request.user, days=params["days"])
        return Response({"days": params["days"], "results": s.TurnaroundSerializer(rows, many=True).data})
