"""URLs of the AI service: the model-version pages, and its API v1 endpoints (joined into the ``api``
namespace by ``teleder/urls.py``)."""

from django.urls import path

from cases.api.urls import IdConverter  # noqa: F401 - registers the <id:...> converter used below
from inference import api, views

urlpatterns = [
    path("manage/models/", views.model_list, name="model_list"),
    path("manage/models/<int:model_id>/", views.model_detail, name="model_detail"),
    path("manage/models/<int:model_id>/activate/", views.model_activate, name="model_activate"),
]

api_v1 = [
    path("model-versions/", api.ModelVersionListView.as_view(), name="model-version-list"),
    path("model-versions/<id:pk>/", api.ModelVersionDetailView.as_view(), name="model-version-detail"),
    path(
        "model-versions/<id:pk>/activate/",
        api.ModelVersionActivateView.as_view(),
        name="model-version-activate",
    ),
]
