"""Who may see what and who may do what: the one permissions module.

Each visibility filter (``*_visible_to``: what a user's lists and lookups are narrowed to) sits next to the
object checks (``can_*``) that go with it, as ISIC's ``core/permissions.py`` pairs them. Selectors build on
the filters (an object outside them is a 404, so guessed ids reveal nothing); services call the checks before
every write; pages and API views gate whole endpoints with the role groups.
"""

from collections.abc import Iterable

from django.db.models import Q, QuerySet

from cases.models import Case, Lesion, Organization, Patient, Report, User
from cases.vocabulary import Role

# Role groups -------------------------------------------------------------------------------------------

SUBMITTERS = (Role.CLINICIAN, Role.ADMIN)  # add patients and lesions, submit cases
REVIEWERS = (Role.DERMATOLOGIST,)  # review and sign
QUEUE_READERS = (Role.DERMATOLOGIST, Role.ADMIN)  # open the review queue


def has_role(user: User, roles: Iterable[str]) -> bool:
    """Signed in and in one of ``roles``; a superuser counts as an administrator."""
    if not user.is_authenticated:
        return False
    roles = tuple(roles)
    return user.role in roles or (Role.ADMIN in roles and user.is_platform_admin)


# Organizations -----------------------------------------------------------------------------------------


def organizations_for(user: User) -> QuerySet[Organization]:
    """Organizations the user works for (all of them for platform admins)."""
    if not user.is_authenticated:
        return Organization.objects.none()
    if user.is_platform_admin:
        return Organization.objects.all()
    return user.organizations.all()


def _org_filter(user: User, prefix: str = "") -> Q | None:
    """None means unrestricted (platform admin)."""
    if user.is_platform_admin:
        return None
    return Q(**{f"{prefix}organization__in": user.organizations.all()})


def _restricted(qs: QuerySet, user: User, prefix: str = "") -> QuerySet:
    restriction = _org_filter(user, prefix)
    return qs if restriction is None else qs.filter(restriction)


# Patients and lesions ----------------------------------------------------------------------------------


def patients_visible_to(user: User) -> QuerySet[Patient]:
    if not user.is_authenticated:
        return Patient.objects.none()
    return _restricted(Patient.objects.select_related("organization"), user)


def lesions_visible_to(user: User) -> QuerySet[Lesion]:
    if not user.is_authenticated:
        return Lesion.objects.none()
    return _restricted(Lesion.objects.select_related("patient__organization"), user, "patient__")


def can_submit(user: User, organization: Organization) -> bool:
    """Add patients, lesions and cases to ``organization``: its clinicians, and platform admins."""
    if not has_role(user, SUBMITTERS):
        return False
    return user.is_platform_admin or user.organizations.filter(pk=organization.pk).exists()


# Cases -------------------------------------------------------------------------------------------------


def cases_visible_to(user: User) -> QuerySet[Case]:
    if not user.is_authenticated:
        return Case.objects.none()
    qs = Case.objects.select_related("organization", "lesion__patient", "submitted_by", "model_version")
    return _restricted(qs, user)


def can_edit_submission(user: User, case: Case) -> bool:
    """Only the submitting clinician (or a platform admin) adds images to a case and submits it."""
    return user.is_authenticated and (case.submitted_by_id == user.pk or user.is_platform_admin)


def can_retry(user: User) -> bool:
    """Sending a failed case back for analysis is an administrator's decision."""
    return user.is_authenticated and user.is_platform_admin


def can_review(user: User, case: Case) -> bool:
    """Only dermatologists who serve the case's organization review and sign."""
    return has_role(user, REVIEWERS) and user.organizations.filter(pk=case.organization_id).exists()


def can_open_review_queue(user: User) -> bool:
    return has_role(user, QUEUE_READERS)


# Reports -----------------------------------------------------------------------------------------------


def reports_visible_to(user: User) -> QuerySet[Report]:
    if not user.is_authenticated:
        return Report.objects.none()
    return _restricted(
        Report.objects.select_related("case__organization", "signer", "review"), user, "case__"
    )
