"""Request id and client address for logs and the audit trail."""

import ipaddress
import uuid
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from teleder.context import set_request_context


def client_ip(request: HttpRequest) -> str | None:
    # Behind the proxy, gunicorn's PROXY protocol (proxy_allow_ips, see docs/deploy.md) makes REMOTE_ADDR the
    # real client. X-Forwarded-For is never trusted: a client could write anything there.
    value = request.META.get("REMOTE_ADDR", "")
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


class RequestContextMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        supplied = request.headers.get("X-Request-ID", "")
        request_id = supplied if supplied and len(supplied) <= 64 and supplied.isascii() else uuid.uuid4().hex
        request.request_id = request_id
        set_request_context(request_id=request_id, ip_address=client_ip(request))
        response = self.get_response(request)
        response["X-Request-ID"] = request_id
        set_request_context(request_id=None, ip_address=None)
        return response


# Pages load scripts, styles and images from this site only; image previews in the case form use blob: URLs.
# Inline styles stay allowed (a few templates set widths); inline scripts do not.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: blob:",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
# Third-party pages with inline scripts of their own: Django's admin and the Swagger UI.
CSP_EXEMPT_PREFIXES = ("/admin/", "/api/docs/")


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if not request.path.startswith(CSP_EXEMPT_PREFIXES):
            response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        return response
