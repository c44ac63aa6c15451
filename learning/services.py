"""Writes of the learning loop: an organization's opt-in to share training data, and the training-set export.

The export turns dermatologists' reviews into a data folder in the training CSV format
(``image_id, filename, diagnosis, malignant, age, sex, anatom_site, lesion_id, source``): the latest review's
diagnosis is the label, images are re-encoded without metadata, ids are keyed hashes (stable within one
deployment, meaningless outside it) and no patient reference, name, note or date reaches the files.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils.crypto import salted_hmac
from PIL import Image

from cases.audit import AuditAction, audit_record
from cases.models import CaseStatus, Organization, Review, User
from cases.vocabulary import Sex, Site
from learning.models import TrainingDataSharing

EXPORT_COLUMNS = (
    "image_id",
    "filename",
    "diagnosis",
    "malignant",
    "age",
    "sex",
    "anatom_site",
    "lesion_id",
    "source",
)
_HASH_SALT = "teleder.learning.training-export"


class ExportError(ValueError):
    """The export cannot run (organization not opted in, output folder unusable); nothing was written."""


@dataclass
class ExportResult:
    out_dir: Path
    cases: int = 0
    images: int = 0
    malignant_cases: int = 0
    by_organization: dict[str, int] = field(default_factory=dict)
    by_diagnosis: dict[str, int] = field(default_factory=dict)


def training_sharing_set(
    *, actor: User | None, organization: Organization, enabled: bool
) -> TrainingDataSharing:
    """Turn an organization's training-data sharing on or off (platform administrators only; audited)."""
    if actor is not None and not actor.is_platform_admin:
        raise PermissionDenied("Only a platform administrator can change an organization's data sharing.")
    with transaction.atomic():
        sharing, _ = TrainingDataSharing.objects.select_for_update().get_or_create(organization=organization)
        if sharing.enabled != enabled:
            sharing.enabled = enabled
            sharing.changed_by = actor
            sharing.save(update_fields=["enabled", "changed_by", "changed_at"])
            audit_record(
                actor=actor,
                action=AuditAction.ORGANIZATION_TRAINING_SHARING,
                obj=organization,
                enabled=enabled,
            )
    return sharing


def pseudonym(kind: str, pk: int) -> str:
    """A keyed hash of a platform id: stable in this deployment (same lesion, same id), not reversible."""
    return salted_hmac(_HASH_SALT, f"{kind}:{pk}").hexdigest()[:20]


def _prepare_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"{out_dir} exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        raise ExportError(f"{out_dir} is not empty: choose a new or empty folder")
    try:
        (out_dir / "images").mkdir(parents=True, exist_ok=True)
        probe = out_dir / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ExportError(f"{out_dir} is not writable: {exc.strerror or exc}") from exc


def _sharing_organizations(organization: Organization | None) -> list[Organization]:
    if organization is not None:
        if not TrainingDataSharing.objects.filter(organization=organization, enabled=True).exists():
            raise ExportError(
                f"organization {organization.slug!r} has not opted in to sharing training data "
                f"(an administrator can enable it: manage.py training_data_sharing {organization.slug} --enable)"
            )
        return [organization]
    shared = list(Organization.objects.filter(training_data_sharing__enabled=True).order_by("slug"))
    if not shared:
        raise ExportError("no organization has opted in to sharing training data")
    return shared


def _reencode(source, destination: Path) -> None:
    """Decode and write pixels only: no EXIF, ICC profile, comment or any other metadata survives."""
    with Image.open(source) as image:
        image.load()
        pixels = image.convert("RGB")
    clean = Image.new("RGB", pixels.size)
    clean.paste(pixels)
    clean.save(destination, format="JPEG", quality=95)


def exportable_reviews(*, organizations: list[Organization], since: dt.datetime | None = None):
    """The current (not superseded) reviews of reviewed or reported cases, with what the export reads."""
    reviews = (
        Review.objects.filter(
            superseded_by__isnull=True,
            case__organization__in=organizations,
            case__status__in=(CaseStatus.REVIEWED, CaseStatus.REPORTED),
        )
        .select_related("case__organization", "case__lesion")
        .prefetch_related("case__images")
        .order_by("pk")
    )
    if since is not None:
        reviews = reviews.filter(created_at__gte=since)
    return reviews


def training_set_export(
    *,
    out_dir: Path,
    organization: Organization | None = None,
    since: dt.datetime | None = None,
    actor: User | None = None,
) -> ExportResult:
    """Write the reviewed cases of opted-in organizations as a training data folder (labels.csv + images/).

    Refuses (ExportError, nothing written) an organization that has not opted in and an output folder that
    exists and is not empty or cannot be written. A failure half-way removes what it wrote.
    """
    out_dir = Path(out_dir)
    organizations = _sharing_organizations(organization)
    existed = out_dir.exists()
    _prepare_out_dir(out_dir)
    result = ExportResult(out_dir=out_dir)
    by_org: Counter[str] = Counter()
    by_diagnosis: Counter[str] = Counter()
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    try:
        for review in exportable_reviews(organizations=organizations, since=since).iterator(chunk_size=500):
            case = review.case
            lesion_id = pseudonym("lesion", case.lesion_id)
            sex = "" if case.sex_at_submission == Sex.UNKNOWN else case.sex_at_submission
            site = "" if case.site_at_submission == Site.UNKNOWN else case.site_at_submission
            age = "" if case.age_at_submission is None else str(case.age_at_submission)
            source = f"teleder:{case.organization.slug}"
            for image in sorted(case.images.all(), key=lambda i: i.position):
                image_id = pseudonym("image", image.pk)
                filename = f"images/{image_id}.jpg"
                with image.file.open("rb") as handle:
                    _reencode(handle, out_dir / filename)
                writer.writerow(
                    (
                        image_id,
                        filename,
                        review.diagnosis,
                        int(review.malignant),
                        age,
                        sex,
                        site,
                        lesion_id,
                        source,
                    )
                )
                result.images += 1
            result.cases += 1
            result.malignant_cases += int(review.malignant)
            by_org[case.organization.slug] += 1
            by_diagnosis[review.diagnosis] += 1
        (out_dir / "labels.csv").write_text(buffer.getvalue(), encoding="utf-8")
        (out_dir / "SOURCES.md").write_text(_sources_text(result, by_org, by_diagnosis), encoding="utf-8")
    except BaseException:
        if existed:
            for child in out_dir.iterdir():
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        else:
            shutil.rmtree(out_dir, ignore_errors=True)
        raise
    result.by_organization = dict(by_org)
    result.by_diagnosis = dict(by_diagnosis)
    for org in organizations:
        audit_record(
            actor=actor,
            action=AuditAction.TRAINING_SET_EXPORT,
            obj=org,
            cases=by_org.get(org.slug, 0),
            since=since.isoformat() if since else None,
        )
    return result


def _sources_text(result: ExportResult, by_org: Counter, by_diagnosis: Counter) -> str:
    lines = [
        "# TeleDerm reviewed cases exported as training data",
        "",
        "Label: the diagnosis and malignant call of the latest (not superseded) dermatologist review of each case.",
        "Images: re-encoded pixels only (JPEG, no EXIF or other metadata). Ids are keyed hashes of platform ids;",
        "`lesion_id` keeps all images of one lesion together so that splits stay lesion-disjoint.",
        "Licence: internal use under each organization's data-sharing agreement; not for redistribution.",
        "",
        f"Cases: {result.cases}, images: {result.images}, malignant cases: {result.malignant_cases}.",
        "",
        "| source | cases |",
        "|---|---|",
        *(f"| teleder:{slug} | {n} |" for slug, n in sorted(by_org.items())),
        "",
        "| diagnosis | cases |",
        "|---|---|",
        *(f"| {d} | {n} |" for d, n in sorted(by_diagnosis.items())),
        "",
    ]
    return "\n".join(lines)
