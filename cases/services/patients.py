"""Patients and their lesions."""

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from cases.audit import AuditAction
from cases.models import Lesion, Organization, Patient, User
from cases.permissions import can_submit, organizations_for
from cases.services.base import _save_audited
from cases.vocabulary import Sex, Site


def patient_organization(*, actor: User, organization_id: int | None = None) -> Organization:
    """The organization a new patient of ``actor`` belongs to: the chosen one, or the only one the actor
    submits for. Web and API decide it here, the same way.

    ``Organization.DoesNotExist`` for an id the actor cannot see; ``PermissionDenied`` when the actor submits
    for no organization; ``ValidationError`` on ``organization`` when there are several and none was chosen.
    """
    if organization_id is not None:
        return organizations_for(actor).get(pk=organization_id)
    candidates = [org for org in organizations_for(actor) if can_submit(actor, org)]
    if not candidates:
        raise PermissionDenied("You do not belong to an organization you can add patients to.")
    if len(candidates) > 1:
        raise ValidationError({"organization": "Choose the organization."})
    return candidates[0]


def _check_year_of_birth(year_of_birth: int | None) -> None:
    if year_of_birth is None:
        return
    this_year = timezone.now().year
    if year_of_birth > this_year:
        raise ValidationError({"year_of_birth": "The year of birth cannot be in the future."})
    if this_year - year_of_birth > 120:
        raise ValidationError({"year_of_birth": "That gives an age over 120 years."})


@transaction.atomic
def patient_create(
    *,
    actor: User,
    organization: Organization,
    reference: str,
    sex: str = Sex.UNKNOWN,
    year_of_birth: int | None = None,
) -> Patient:
    if not can_submit(actor, organization):
        raise PermissionDenied("You cannot add patients to this organization.")
    if sex not in Sex.values:
        raise ValidationError({"sex": f"Sex must be one of {', '.join(Sex.values)}."})
    _check_year_of_birth(year_of_birth)
    reference = (reference or "").strip()
    if Patient.objects.filter(organization=organization, reference__iexact=reference).exists():
        raise ValidationError(
            {"reference": "A patient with this reference already exists in your organization."}
        )
    patient = Patient(
        organization=organization, reference=reference, sex=sex, year_of_birth=year_of_birth, created_by=actor
    )
    return _save_audited(patient, actor=actor, action=AuditAction.PATIENT_CREATE)


@transaction.atomic
def lesion_create(*, actor: User, patient: Patient, site: str = Site.UNKNOWN, label: str = "") -> Lesion:
    if not can_submit(actor, patient.organization):
        raise PermissionDenied("You cannot add lesions for this patient.")
    if site not in Site.values:
        raise ValidationError({"site": "Choose an anatomical site from the ISIC vocabulary."})
    lesion = Lesion(patient=patient, site=site, label=label.strip())
    return _save_audited(
        lesion, actor=actor, action=AuditAction.LESION_CREATE, organization=patient.organization
    )
