"""Web pages of the interop area: the per-case DICOM download for signed-in users."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from cases import selectors
from interop import services


@login_required
@require_GET
def case_dicom_zip(request: HttpRequest, case_id: int) -> HttpResponse:
    """The case's images as a ZIP of DICOM files (another organization's case is a 404); audited."""
    case = selectors.case_get(request.user, case_id)
    export = services.dicom_export(actor=request.user, case=case, via="web")
    response = HttpResponse(export.content, content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="{export.filename}"'
    response["Cache-Control"] = "no-store"
    return response
