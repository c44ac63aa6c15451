"""The REST API of the cases: v1 under /api/v1/, the OpenAPI 3 schema at /api/schema/ and Swagger UI at
/api/docs/. ``teleder/urls.py`` joins these and the inference app's endpoints (``inference.urls.api_v1``) in
one ``api`` namespace."""

from django.urls import path, register_converter
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from cases.api import heatmaps, views, workflow


class IdConverter:
    """Database ids: at most 18 digits, so that a huge number in a URL is a 404 rather than an overflow."""

    regex = "[0-9]{1,18}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: int) -> str:
        return str(value)


register_converter(IdConverter, "id")

v1 = [
    path("auth/login/", views.LoginView.as_view(), name="login"),
    path("auth/refresh/", views.RefreshView.as_view(), name="refresh"),
    path("auth/logout/", views.LogoutView.as_view(), name="logout"),
    path("me/", views.MeView.as_view(), name="me"),
    path("organizations/", views.OrganizationListView.as_view(), name="organization-list"),
    path("patients/", views.PatientListView.as_view(), name="patient-list"),
    path("patients/<id:pk>/", views.PatientDetailView.as_view(), name="patient-detail"),
    path("lesions/", views.LesionListView.as_view(), name="lesion-list"),
    path("lesions/<id:pk>/", views.LesionDetailView.as_view(), name="lesion-detail"),
    path("cases/", views.CaseListView.as_view(), name="case-list"),
    path("cases/<id:pk>/", views.CaseDetailView.as_view(), name="case-detail"),
    path("cases/<id:pk>/status/", views.CaseStatusView.as_view(), name="case-status"),
    path("cases/<id:pk>/images/", views.CaseImagesView.as_view(), name="case-images"),
    path(
        "cases/<id:pk>/predictions/<id:prediction>/heatmap/",
        heatmaps.PredictionHeatmapView.as_view(),
        name="prediction-heatmap",
    ),
    path("cases/<id:pk>/reviews/", views.CaseReviewView.as_view(), name="case-review"),
    path("cases/<id:pk>/corrections/", workflow.CaseCorrectionView.as_view(), name="case-correction"),
    path("cases/<id:pk>/submit/", workflow.CaseSubmitView.as_view(), name="case-submit"),
    path("cases/<id:pk>/image-requests/", workflow.CaseImageRequestView.as_view(), name="case-image-request"),
    path("stats/turnaround/", workflow.TurnaroundView.as_view(), name="turnaround"),
    path("queue/", views.QueueView.as_view(), name="queue"),
    path("reports/verify/", views.ReportVerifyView.as_view(), name="report-verify"),
    path("reports/<uuid:uid>/", views.ReportDetailView.as_view(), name="report-detail"),
    path("reports/<uuid:uid>/download/", views.ReportDownloadView.as_view(), name="report-download"),
]

schema = [
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema"), name="docs"),
]
