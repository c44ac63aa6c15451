"""URLs of the reports area, mounted at /reports/."""

from django.urls import path

from cases.reports import views

urlpatterns = [
    path("<uuid:uid>/download/", views.report_download, name="report_download"),
    path("verify/", views.report_verify, name="report_verify"),
    path("ca.pem", views.report_ca, name="report_ca"),
]
