"""The heatmap overlay of one AI prediction, for API clients (the same org-scoped selector and audit as the
page's ``case_heatmap``). ``heatmap_url`` on each prediction points here."""

from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.request import Request

from cases import selectors
from cases.api.views import ApiView
from cases.views.clinic import heatmap_response


class PredictionHeatmapView(ApiView):
    @extend_schema(
        tags=["cases"],
        summary="The heatmap of one AI prediction (PNG overlay)",
        description=(
            "Where the model looked: the Grad-CAM of the malignancy score, averaged over the ensemble's members "
            "and the flipped view, as a PNG with transparency at the image's aspect ratio (longest side 320 px), "
            "to lay over the image stretched to the same box. Warm areas are where the model's malignancy score "
            "is most sensitive; a map on a ruler, hair or the vignette is a warning sign. 404 for a case the "
            "user may not see and for a prediction without a map (`heatmap_url` is null then). Reads are "
            "recorded in the audit trail."
        ),
        responses={(200, "image/png"): OpenApiResponse(OpenApiTypes.BINARY, description="The PNG overlay.")},
    )
    def get(self, request: Request, pk: int, prediction: int) -> FileResponse:
        found = selectors.prediction_heatmap(request.user, pk, prediction)
        return heatmap_response(request, found, via="api")
