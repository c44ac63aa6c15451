from django.urls import path

from learning import api

app_name = "learning_api"

urlpatterns = [
    path("agreement/", api.AgreementView.as_view(), name="agreement"),
]
