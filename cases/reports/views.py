"""Pages of the reports area: download (permission-checked and audited), public verification, CA certificate.

Thin: permission, audit and verification live in ``services``, ``selectors`` and ``verify``.
"""

import logging

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_http_methods

from cases.reports import services, signing, verify
from cases.reports.selectors import report_public_status

logger = logging.getLogger(__name__)


@login_required
@require_GET
def report_download(request: HttpRequest, uid: str) -> HttpResponse:
    try:
        download = services.report_download(actor=request.user, uid=uid)
    except services.ReportIntegrityError:
        return render(
            request,
            "error.html",
            {
                "status": 503,
                "message": "This report's stored file failed its integrity check and is withheld. "
                "The administrators have been alerted.",
            },
            status=503,
        )
    response = HttpResponse(download.content, content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="{download.filename}"'
    response["Cache-Control"] = "private, no-store"
    response["X-Report-SHA256"] = download.report.sha256
    return response


def _status_code(result: verify.VerificationResult) -> int:
    if result.status == verify.TOO_LARGE:
        return 413
    return 400 if result.status in verify.INPUT_PROBLEMS else 200


@require_http_methods(["GET", "POST"])
def report_verify(request: HttpRequest) -> HttpResponse:
    """Anyone can check a report: GET shows the form (and, for ``?report=<uid>``, whether that report is on
    record); POST with ``file`` says whether the upload is an intact report signed by this platform."""
    context = {
        "lookup_uid": request.GET.get("report", "")[:64],
        "lookup": report_public_status(request.GET.get("report")) if request.GET.get("report") else None,
        "max_mb": verify.max_upload_bytes() // (1024 * 1024),
        "ca_available": signing.ca_exists(),
    }
    if request.method == "GET":
        return render(request, "reports/verify.html", context)
    declared = request.META.get("CONTENT_LENGTH") or "0"
    if declared.isdigit() and int(declared) > verify.max_upload_bytes() + 64 * 1024:
        result = verify.VerificationResult(
            status=verify.TOO_LARGE,
            message=f"The file is larger than {context['max_mb']} MB; reports are much smaller.",
        )
    else:
        upload = request.FILES.get("file")
        if upload is None:
            result = verify.VerificationResult(status=verify.EMPTY, message="Choose the report PDF to check.")
        else:
            content = verify.read_upload(upload)
            result = (
                content
                if isinstance(content, verify.VerificationResult)
                else verify.verify_report_pdf(content)
            )
    context["result"] = result
    return render(request, "reports/verify.html", context, status=_status_code(result))


@require_GET
def report_ca(request: HttpRequest) -> HttpResponse:
    """The platform CA certificate (PEM), to add as a trusted certificate in a PDF reader."""
    pem = signing.ca_certificate_pem()
    if pem is None:
        raise Http404("The signing CA has not been created yet.")
    response = HttpResponse(pem, content_type="application/x-pem-file")
    response["Content-Disposition"] = 'attachment; filename="teleder-signing-ca.pem"'
    return response
