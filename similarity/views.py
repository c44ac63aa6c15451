"""Pages of the similarity library: a reference image's thumbnail (reference sets hold no patient data)."""

from django.http import FileResponse, Http404, HttpRequest
from django.views.decorators.http import require_GET

from cases.permissions import QUEUE_READERS, SUBMITTERS
from cases.views.common import role_required
from similarity.models import ReferenceImage


@role_required(*SUBMITTERS, *QUEUE_READERS)
@require_GET
def reference_thumbnail(request: HttpRequest, reference_id: int) -> FileResponse:
    reference = ReferenceImage.objects.filter(pk=reference_id).first()
    if reference is None:
        raise Http404("No such reference image.")
    response = FileResponse(reference.thumbnail.open("rb"), content_type="image/jpeg")
    response["Cache-Control"] = "private, max-age=86400"
    return response
