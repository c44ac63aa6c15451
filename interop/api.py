"""API v1 endpoints of the interop area: FHIR R4 results, DICOM export and import. Thin: parse, call a selector
or a service, render. Object permissions come from ``cases.selectors`` (another organization's case is a 404)."""

from __future__ import annotations

import re

from django.conf import settings
from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from cases import selectors as case_selectors
from cases.api.errors import Conflict, PayloadTooLarge
from cases.api.serializers import ErrorSerializer, ImageSerializer
from cases.api.throttling import UploadThrottle
from cases.api.views import ApiView
from cases.audit import AuditAction, audit_record
from interop import fhir, services
from interop import selectors as interop_selectors

FHIR_MEDIA_TYPE = "application/fhir+json"
MAX_ID = 10**18 - 1


class FhirJSONRenderer(JSONRenderer):
    media_type = FHIR_MEDIA_TYPE
    format = "fhir"


def _conflict(exc: interop_selectors.NotReported) -> Conflict:
    return Conflict(" ".join(exc.messages))


_FHIR_OBJECT = OpenApiResponse(
    OpenApiTypes.OBJECT,
    description="A FHIR R4 `Bundle` (JSON); its resources validate with the `fhir.resources` R4 models.",
)
_NOT_REPORTED = OpenApiResponse(
    ErrorSerializer,
    description="The case has no signed report yet (`conflict`).",
    examples=[
        OpenApiExample(
            "not reported",
            value={
                "error": {"code": "conflict", "message": "Case 42 has no signed report yet.", "fields": {}}
            },
            status_codes=["409"],
            response_only=True,
        )
    ],
)


class FhirView(ApiView):
    renderer_classes = [FhirJSONRenderer, JSONRenderer]

    def fhir_response(self, bundle: dict) -> Response:
        if settings.TELEDER_FHIR_VALIDATE:
            fhir.validate(bundle)  # raises on anything the FHIR R4 models reject: a server error, logged
        return Response(bundle)


class CaseFhirView(FhirView):
    @extend_schema(
        tags=["interop"],
        summary="The case's signed result as a FHIR R4 Bundle",
        description="A `collection` Bundle: the DiagnosticReport (`final`, or `amended` after an addendum; "
        "LOINC 34758-3, conclusion and SNOMED CT conclusionCode, the signed PDF as presentedForm), the AI "
        "Observations (risk with band and model version; the differential when the model gives one), a Media "
        "per image, the pseudonymous Patient, the signer and referrer Practitioners, the referral "
        "(ServiceRequest), the lesion site (BodyStructure) and the model (Device). Served as "
        "`application/fhir+json` (or `application/json` on request). 409 until the case is reported.",
        responses={
            (200, FHIR_MEDIA_TYPE): _FHIR_OBJECT,
            (200, "application/json"): _FHIR_OBJECT,
            409: _NOT_REPORTED,
        },
    )
    def get(self, request: Request, pk: int) -> Response:
        try:
            record = interop_selectors.fhir_case(request.user, pk, base_url=settings.SITE_URL)
        except interop_selectors.NotReported as exc:
            raise _conflict(exc) from None
        audit_record(
            actor=request.user,
            action=AuditAction.CASE_FHIR_EXPORT,
            obj=record.case,
            report=str(record.report.uid),
        )
        return self.fhir_response(fhir.case_bundle(record))


_PATIENT = re.compile(r"^(?:Patient/)?([0-9]{1,18})$")


class DiagnosticReportSearchSerializer(serializers.Serializer):
    patient = serializers.CharField(
        max_length=40, help_text="The patient's API id (`12`), or as a FHIR reference (`Patient/12`)."
    )
    _count = serializers.IntegerField(
        required=False, default=20, min_value=1, max_value=100, help_text="Reports per answer (1-100)."
    )

    def validate_patient(self, value: str) -> int:
        match = _PATIENT.match(value.strip())
        if not match or not 1 <= int(match.group(1)) <= MAX_ID:
            raise serializers.ValidationError("Give the patient's id, e.g. 12 or Patient/12.")
        return int(match.group(1))


class DiagnosticReportSearchView(FhirView):
    @extend_schema(
        tags=["interop"],
        summary="FHIR search: DiagnosticReports of one patient",
        description="A `searchset` Bundle with the current DiagnosticReport of each reported case of the "
        "patient (newest first) as `match` entries, and the resources they reference as `include` entries. "
        "presentedForm carries the PDF's download URL here, not its data (fetch the case Bundle for it). "
        "Another organization's patient is a 404.",
        parameters=[DiagnosticReportSearchSerializer],
        responses={(200, FHIR_MEDIA_TYPE): _FHIR_OBJECT, (200, "application/json"): _FHIR_OBJECT},
    )
    def get(self, request: Request) -> Response:
        params = self.query(DiagnosticReportSearchSerializer)
        cases = interop_selectors.reported_cases_of_patient(request.user, params["patient"])
        total = cases.count()
        records = [
            interop_selectors.case_record(case, with_pdf=False, base_url=settings.SITE_URL)
            for case in cases[: params["_count"]]
        ]
        for record in records:
            audit_record(
                actor=request.user,
                action=AuditAction.CASE_FHIR_EXPORT,
                obj=record.case,
                report=str(record.report.uid),
            )
        bundle = fhir.search_bundle(
            records, total=total, self_url=request.build_absolute_uri(), now=timezone.now()
        )
        return self.fhir_response(bundle)


# DICOM ------------------------------------------------------------------------------------------------


class DicomImportSerializer(serializers.Serializer):
    file = serializers.FileField(
        help_text="One DICOM Part 10 file: a single-frame VL Photographic or Dermoscopic Photography image."
    )


def _check_dicom_size(request: Request, upload=None) -> None:
    """413 for a body or a file over the per-image limit (before and after parsing)."""
    limit = settings.TELEDER_MAX_IMAGE_BYTES
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    size = upload.size if upload is not None else length - 64 * 1024  # room for the multipart framing
    if size > limit:
        raise PayloadTooLarge(f"The DICOM file is larger than {limit // (1024 * 1024)} MB.")


class CaseDicomView(ApiView):
    parser_classes = [MultiPartParser, FormParser]

    def get_throttles(self) -> list:
        throttles = super().get_throttles()
        return [*throttles, UploadThrottle()] if self.request.method == "POST" else throttles

    @extend_schema(
        tags=["interop"],
        summary="The case's images as DICOM (a ZIP of VL Photographic Image files)",
        description="One `IMGnnnn.dcm` per image: VL Photographic Image Storage, modality XC, the "
        "dermoscopic photography procedure code, the anatomic region of the lesion site and the laterality "
        "when the lesion's label names a side. The patient is identified by the pseudonymous reference only; "
        "study and series UIDs stay the same for the case. JPEG images are kept byte for byte (JPEG "
        "Baseline), PNG images are written as uncompressed RGB.",
        responses={
            (200, "application/zip"): OpenApiResponse(
                OpenApiTypes.BINARY, description="The ZIP of DICOM files."
            )
        },
    )
    def get(self, request: Request, pk: int) -> HttpResponse:
        case = case_selectors.case_get(request.user, pk)
        export = services.dicom_export(actor=request.user, case=case, via="api")
        response = HttpResponse(export.content, content_type="application/zip")
        response["Content-Disposition"] = f'attachment; filename="{export.filename}"'
        return response

    @extend_schema(
        tags=["interop"],
        summary="Add a DICOM dermoscopy image to a case (before its analysis starts)",
        description="Upload one DICOM file as `file`. Its pixels are decoded, checked by the same upload "
        "validator as any image and stored re-encoded; no DICOM attribute is kept. Refused with 400 (field "
        "`file`): another modality (e.g. CT), an unsupported transfer syntax, several frames, a damaged file. "
        "Only the submitting clinician, while the case is submitted.",
        request={"multipart/form-data": DicomImportSerializer},
        responses={201: ImageSerializer(many=True)},
    )
    def post(self, request: Request, pk: int) -> Response:
        _check_dicom_size(request)
        case = case_selectors.case_get(request.user, pk)
        data = self.body(DicomImportSerializer)
        _check_dicom_size(request, data["file"])
        stored = services.dicom_import(actor=request.user, case=case, upload=data["file"])
        return Response(ImageSerializer(stored, many=True).data, status=status.HTTP_201_CREATED)
