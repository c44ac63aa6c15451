"""Demo data: two organizations and one user per role, created idempotently through the services."""

from dataclasses import dataclass

from django.db import transaction

from cases import services
from cases.models import Organization, User
from cases.vocabulary import Role


@dataclass(frozen=True)
class DemoLogin:
    username: str
    password: str
    role: str
    organizations: str


DEMO_USERS = [
    ("clinician", "demo-clinician-2026", Role.CLINICIAN, ["demo-clinic"], "Casey", "Clinician"),
    ("clinician2", "demo-clinician-2026", Role.CLINICIAN, ["riverside"], "Robin", "Riverside"),
    (
        "dermatologist",
        "demo-dermatologist-2026",
        Role.DERMATOLOGIST,
        ["demo-clinic", "riverside"],
        "Dana",
        "Derm",
    ),
    ("admin", "demo-admin-2026", Role.ADMIN, [], "Ada", "Admin"),
]
DEMO_ORGANIZATIONS = [("demo-clinic", "Demo Skin Clinic"), ("riverside", "Riverside Hospital")]


@transaction.atomic
def seed_demo() -> list[DemoLogin]:
    """Create the demo organizations and users if missing; return the logins to print."""
    organizations = {}
    for slug, name in DEMO_ORGANIZATIONS:
        organizations[slug] = Organization.objects.filter(slug=slug).first() or services.organization_create(
            name=name, slug=slug
        )
    logins = []
    for username, password, role, org_slugs, first, last in DEMO_USERS:
        orgs = [organizations[s] for s in org_slugs]
        if not User.objects.filter(username=username).exists():
            user = services.user_create(
                username=username,
                password=password,
                role=role,
                organizations=orgs,
                first_name=first,
                last_name=last,
                email=f"{username}@demo.teleder.invalid",
            )
            if role == Role.ADMIN:
                user.is_superuser = True
                user.save(update_fields=["is_superuser"])
        logins.append(
            DemoLogin(username, password, Role(role).label, ", ".join(o.name for o in orgs) or "all")
        )
    return logins
