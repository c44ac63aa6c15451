from django.urls import path

from learning import api, views

urlpatterns = [
    path("learning/agreement/", views.agreement, name="agreement"),
    path("learning/drift/", views.drift, name="drift"),
]

# Joined into the REST API's ``api`` namespace under /api/v1/ by teleder/urls.py.
api_v1 = [
    path("learning/agreement/", api.AgreementView.as_view(), name="learning-agreement"),
]
