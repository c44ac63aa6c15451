"""API v1 routes of the interop area; teleder/urls.py joins them into the REST API's ``api`` namespace."""

from django.urls import path

from cases.api import urls as _api_urls  # noqa: F401 - registers the "id" path converter
from interop import api

api_v1 = [
    path("cases/<id:pk>/dicom", api.CaseDicomView.as_view(), name="case-dicom"),
    path("cases/<id:pk>/fhir", api.CaseFhirView.as_view(), name="case-fhir"),
    path(
        "fhir/DiagnosticReport", api.DiagnosticReportSearchView.as_view(), name="fhir-diagnosticreport-search"
    ),
]
