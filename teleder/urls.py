"""URL wiring only: each area owns its own urls module."""

from django.contrib import admin
from django.urls import include, path

from cases.audit_export import audit_export
from teleder.metrics import metrics

urlpatterns = [
    path("metrics", metrics, name="metrics"),
    path("admin/audit/export.csv", audit_export, name="audit_export"),
    path("admin/", admin.site.urls),
    path("api/v1/learning/", include("learning.api_urls")),
    path("api/", include("cases.api.urls")),
    path("reports/", include("cases.reports.urls")),
    path("", include("teleder.health")),
    path("", include("learning.urls")),
    path("", include("cases.urls")),
]

handler400 = "teleder.errors.bad_request"
handler403 = "teleder.errors.permission_denied"
handler404 = "teleder.errors.page_not_found"
handler500 = "teleder.errors.server_error"
