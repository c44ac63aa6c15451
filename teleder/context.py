"""Per-request context (request id, client address) readable by services without plumbing arguments."""

from contextvars import ContextVar

_request_id: ContextVar[str | None] = ContextVar("teleder_request_id", default=None)
_ip_address: ContextVar[str | None] = ContextVar("teleder_ip_address", default=None)


def set_request_context(*, request_id: str | None, ip_address: str | None) -> None:
    _request_id.set(request_id)
    _ip_address.set(ip_address)


def current_request_id() -> str | None:
    return _request_id.get()


def current_ip_address() -> str | None:
    return _ip_address.get()
