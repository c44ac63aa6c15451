"""The REST API: v1 under /api/v1/, the OpenAPI 3 schema at /api/schema/ and Swagger UI at /api/docs/."""

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from cases.api import views

app_name = "api"

v1 = [
    path("auth/login/", views.LoginView.as_view(), name="login"),
    path("auth/refresh/", views.RefreshView.as_view(), name="refresh"),
    path("auth/logout/", views.LogoutView.as_view(), name="logout"),
    path("me/", views.MeView.as_view(), name="me"),
    path("organizations/", views.OrganizationListView.as_view(), name="organization-list"),
    path("patients/", views.PatientListView.as_view(), name="patient-list"),
    path("patients/<int:pk>/", views.PatientDetailView.as_view(), name="patient-detail"),
    path("lesions/", views.LesionListView.as_view(), name="lesion-list"),
    path("lesions/<int:pk>/", views.LesionDetailView.as_view(), name="lesion-detail"),
    path("cases/", views.CaseListView.as_view(), name="case-list"),
    path("cases/<int:pk>/", views.CaseDetailView.as_view(), name="case-detail"),
    path("cases/<int:pk>/status/", views.CaseStatusView.as_view(), name="case-status"),
    path("cases/<int:pk>/images/", views.CaseImagesView.as_view(), name="case-images"),
    path("cases/<int:pk>/reviews/", views.CaseReviewView.as_view(), name="case-review"),
    path("queue/", views.QueueView.as_view(), name="queue"),
    path("reports/verify/", views.ReportVerifyView.as_view(), name="report-verify"),
    path("reports/<uuid:uid>/", views.ReportDetailView.as_view(), name="report-detail"),
    path("reports/<uuid:uid>/download/", views.ReportDownloadView.as_view(), name="report-download"),
    path("model-versions/", views.ModelVersionListView.as_view(), name="model-version-list"),
    path("model-versions/<int:pk>/", views.ModelVersionDetailView.as_view(), name="model-version-detail"),
    path(
        "model-versions/<int:pk>/activate/",
        views.ModelVersionActivateView.as_view(),
        name="model-version-activate",
    ),
]

urlpatterns = [
    path("v1/", include(v1)),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema"), name="docs"),
]
