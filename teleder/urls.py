"""URL wiring only: each area owns its own urls module; the API's ``api`` namespace joins the cases', the
inference app's, the interop area's and the learning loop's v1 endpoints."""

from django.contrib import admin
from django.urls import include, path

from cases.api import urls as cases_api
from cases.audit_export import audit_export
from inference import urls as inference_urls
from interop import urls as interop_urls
from interop.views import case_dicom_zip
from learning import urls as learning_urls
from similarity import urls as similarity_urls
from teleder.metrics import metrics

api = [
    path(
        "v1/",
        include(
            [
                *cases_api.v1,
                *inference_urls.api_v1,
                *interop_urls.api_v1,
                *learning_urls.api_v1,
                *similarity_urls.api_v1,
            ]
        ),
    ),
    *cases_api.schema,
]

urlpatterns = [
    path("metrics", metrics, name="metrics"),
    path("admin/audit/export.csv", audit_export, name="audit_export"),
    path("admin/", admin.site.urls),
    path("api/", include((api, "api"))),
    path("reports/", include("cases.reports.urls")),
    path("", include("teleder.health")),
    path("cases/<int:case_id>/dicom.zip", case_dicom_zip, name="case_dicom_zip"),
    path("", include("inference.urls")),
    path("", include("learning.urls")),
    path("", include("similarity.urls")),
    path("", include("cases.urls")),
]

handler400 = "teleder.errors.bad_request"
handler403 = "teleder.errors.permission_denied"
handler404 = "teleder.errors.page_not_found"
handler500 = "teleder.errors.server_error"
