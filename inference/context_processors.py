"""Template context for the operations banner that platform administrators see on every page."""

from django.http import HttpRequest


def analysis_queue(request: HttpRequest) -> dict:
    """``analysis_queue_unavailable_since`` for administrators while stored cases cannot be queued."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated or not getattr(user, "is_platform_admin", False):
        return {}
    from inference.selectors import analysis_queue_unavailable_since

    return {"analysis_queue_unavailable_since": analysis_queue_unavailable_since()}
