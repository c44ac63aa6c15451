"""Organizations and users."""

from collections.abc import Sequence

from django.core.exceptions import ValidationError
from django.db import transaction

from cases.audit import AuditAction, audit_record
from cases.models import Organization, User
from cases.services.base import _save_audited
from cases.vocabulary import Role


@transaction.atomic
def organization_create(*, name: str, slug: str, actor: User | None = None) -> Organization:
    organization = Organization(name=name.strip(), slug=slug.strip())
    return _save_audited(organization, actor=actor, action=AuditAction.ORGANIZATION_CREATE)


@transaction.atomic
def user_create(
    *,
    username: str,
    password: str,
    role: str,
    organizations: Sequence[Organization] = (),
    email: str = "",
    first_name: str = "",
    last_name: str = "",
    actor: User | None = None,
) -> User:
    if role not in Role.values:
        raise ValidationError({"role": f"Unknown role {role!r}."})
    if role == Role.CLINICIAN and len(organizations) != 1:
        raise ValidationError({"organizations": "A clinician belongs to exactly one organization."})
    user = User(
        username=username,
        email=email,
        role=role,
        first_name=first_name,
        last_name=last_name,
        is_staff=role == Role.ADMIN,
    )
    user.set_password(password)
    _save_audited(
        user,
        actor=actor,
        action=AuditAction.USER_CREATE,
        role=role,
        organizations=[o.slug for o in organizations],
    )
    user.organizations.set(organizations)
    return user


def user_set_notifications(*, actor: User, enabled: bool) -> User:
    """A user turns their own e-mail notifications on or off (audited)."""
    actor.email_notifications = bool(enabled)
    actor.save(update_fields=["email_notifications"])
    audit_record(
        actor=actor, action=AuditAction.USER_NOTIFICATIONS, obj=actor, enabled=actor.email_notifications
    )
    return actor
