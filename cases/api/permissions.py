"""Endpoint-level permissions, from the role groups of ``cases.permissions``. Object-level access is decided
by its visibility filters (another organization's ids give 404), so these classes only gate whole endpoints."""

from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView

from cases.permissions import can_open_review_queue


class IsReviewer(BasePermission):
    """The review queue is for dermatologists (and platform admins, who see it read-only in practice)."""

    message = "Only dermatologists have a review queue."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return bool(request.user and can_open_review_queue(request.user))


class IsPlatformAdminOrReadOnly(BasePermission):
    """Anyone signed in may read; only platform administrators may change (e.g. activate a model)."""

    message = "Only administrators can change model versions."

    def has_permission(self, request: Request, view: APIView) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        return request.method in SAFE_METHODS or user.is_platform_admin
