"""URLs of the similarity library: its page, and its API v1 endpoint (joined into the ``api`` namespace by
``teleder/urls.py``)."""

from django.urls import path

from cases.api.urls import IdConverter  # noqa: F401 - registers the <id:...> converter used below
from similarity import api, views

urlpatterns = [
    path(
        "similarity/references/<int:reference_id>/thumbnail/",
        views.reference_thumbnail,
        name="reference_thumbnail",
    ),
]

api_v1 = [path("cases/<id:pk>/similar/", api.CaseSimilarView.as_view(), name="case-similar")]
