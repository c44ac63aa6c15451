from django.urls import path

from learning import views

urlpatterns = [
    path("learning/agreement/", views.agreement, name="agreement"),
    path("learning/drift/", views.drift, name="drift"),
]
