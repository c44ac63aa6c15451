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
