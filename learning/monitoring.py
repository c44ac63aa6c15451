"""The daily drift check: what the model sees now, per model version and organization, against a reference.

For each (model version, organization) with predictions in the last ``TELEDER_DRIFT_WINDOW_DAYS`` days it
compares, feature by feature, that window with a reference: the risk scores with the package's validation
score histogram when the manifest has one (``metrics.score_histogram``), otherwise, like every other feature,
with the same version and organization's previous ``TELEDER_DRIFT_BASELINE_DAYS`` days. Features: risk score,
the AI gate's outcome (assessed / not assessed), image width, height and mean brightness, age, age missing, sex
and site. A feature whose PSI reaches
``TELEDER_DRIFT_PSI_ALERT`` with at least ``TELEDER_DRIFT_MIN_SAMPLES`` on both sides raises an alert: stored on
the snapshot, shown on the drift page and e-mailed to platform administrators (a link only, no patient data).
"""

from __future__ import annotations

import datetime as dt
import logging
import random
from collections import defaultdict

import numpy as np
from django.conf import settings
from django.core.mail import send_mail
from django.db.models import Q
from django.utils import timezone
from PIL import Image

from cases.models import LesionImage, Prediction, User
from cases.vocabulary import Role
from inference.models import ModelVersion
from learning import drift
from learning.models import DriftSnapshot

logger = logging.getLogger(__name__)


def _brightness(image: LesionImage) -> float | None:
    """Mean grey level (0-255) of a small decoded copy; None when the file cannot be read."""
    try:
        with image.file.open("rb") as handle, Image.open(handle) as picture:
            picture.draft("L", (64, 64))  # JPEG decodes at reduced size: cheap
            grey = picture.convert("L")
            grey.thumbnail((64, 64))
            return float(np.asarray(grey, dtype=np.float64).mean())
    except (OSError, ValueError):
        return None


def _brightness_sample(images: list[LesionImage], limit: int, seed: int) -> list[float]:
    chosen = images if len(images) <= limit else random.Random(seed).sample(images, limit)
    values = (_brightness(i) for i in chosen)
    return [v for v in values if v is not None]


def _rows(since: dt.datetime, until: dt.datetime):
    return (
        Prediction.objects.filter(created_at__gte=since, created_at__lt=until)
        .select_related("image__case")
        .only(
            "model_version_id",
            "created_at",
            "probability",
            "assessment",
            "image__width",
            "image__height",
            "image__file",
            "image__case__organization_id",
            "image__case__age_at_submission",
            "image__case__sex_at_submission",
            "image__case__site_at_submission",
        )
        .order_by("pk")
    )


def _features(predictions: list[Prediction]) -> dict[str, list]:
    cases = [p.image.case for p in predictions]
    return {
        "risk": [p.probability for p in predictions if p.probability is not None],
        "gate": [p.assessment for p in predictions],
        "image_width": [p.image.width for p in predictions],
        "image_height": [p.image.height for p in predictions],
        "age": [c.age_at_submission for c in cases if c.age_at_submission is not None],
        "age_missing": ["missing" if c.age_at_submission is None else "present" for c in cases],
        "sex": [c.sex_at_submission for c in cases],
        "site": [c.site_at_submission for c in cases],
    }


NUMERIC = ("risk", "image_width", "image_height", "age", "brightness")


def _compare(
    version: ModelVersion, reference: list[Prediction], current: list[Prediction]
) -> list[drift.FeatureDrift]:
    ref, cur = _features(reference), _features(current)
    limit = settings.TELEDER_DRIFT_MAX_IMAGES_READ
    ref["brightness"] = _brightness_sample([p.image for p in reference], limit, seed=1)
    cur["brightness"] = _brightness_sample([p.image for p in current], limit, seed=2)
    results = []
    histogram = (version.metrics or {}).get("score_histogram")
    for name in (
        "risk",
        "gate",
        "image_width",
        "image_height",
        "brightness",
        "age",
        "age_missing",
        "sex",
        "site",
    ):
        if name == "risk" and histogram:
            psi = drift.histogram_psi(histogram["edges"], histogram["counts"], cur["risk"])
            results.append(
                drift.FeatureDrift(
                    "risk (vs validation)", "numeric", int(sum(histogram["counts"])), len(cur["risk"]), psi
                )
            )
        elif name in NUMERIC:
            results.append(drift.compare_numeric(name, ref[name], cur[name]))
        else:
            results.append(drift.compare_categorical(name, ref[name], cur[name]))
    return results


def _alerts(features: list[drift.FeatureDrift]) -> list[dict]:
    threshold, minimum = settings.TELEDER_DRIFT_PSI_ALERT, settings.TELEDER_DRIFT_MIN_SAMPLES
    return [
        f.as_dict()
        for f in features
        if f.psi is not None and f.psi >= threshold and f.reference_n >= minimum and f.current_n >= minimum
    ]


def drift_check(*, now: dt.datetime | None = None) -> list[DriftSnapshot]:
    """Store one snapshot per (model version, organization) with predictions in the window; notify on alerts."""
    end = now or timezone.now()
    start = end - dt.timedelta(days=settings.TELEDER_DRIFT_WINDOW_DAYS)
    reference_start = start - dt.timedelta(days=settings.TELEDER_DRIFT_BASELINE_DAYS)
    groups: dict[tuple[int, int], dict[str, list[Prediction]]] = defaultdict(lambda: {"ref": [], "cur": []})
    for prediction in _rows(reference_start, end).iterator(chunk_size=2000):
        key = (prediction.model_version_id, prediction.image.case.organization_id)
        groups[key]["cur" if prediction.created_at >= start else "ref"].append(prediction)
    versions = ModelVersion.objects.in_bulk({k[0] for k in groups})
    snapshots = []
    for (version_id, organization_id), windows in sorted(groups.items()):
        if not windows["cur"]:
            continue
        features = _compare(versions[version_id], windows["ref"], windows["cur"])
        risks = np.array([p.probability for p in windows["cur"] if p.probability is not None])
        rejected = sum(1 for p in windows["cur"] if p.assessment == "not_assessed")
        snapshots.append(
            DriftSnapshot.objects.create(
                model_version_id=version_id,
                organization_id=organization_id,
                window_start=start,
                window_end=end,
                images=len(windows["cur"]),
                features=[f.as_dict() for f in features],
                summary={
                    "mean_risk": float(risks.mean()) if len(risks) else None,
                    "gate_rejected": rejected,
                    "reference_images": len(windows["ref"]),
                },
                alerts=_alerts(features),
            )
        )
    alerting = [s for s in snapshots if s.alerts]
    if alerting:
        _notify(alerting)
    return snapshots


def _notify(snapshots: list[DriftSnapshot]) -> None:
    recipients = list(
        User.objects.filter(Q(role=Role.ADMIN) | Q(is_superuser=True), is_active=True)
        .exclude(email="")
        .values_list("email", flat=True)
    )
    if not recipients:
        return
    lines = [
        f"- {s.model_version} at {s.organization.name}: "
        + ", ".join(f"{a['feature']} (PSI {a['psi']})" for a in s.alerts)
        for s in snapshots
    ]
    body = (
        "The daily drift check found inputs or scores that moved away from their reference:\n\n"
        + "\n".join(lines)
        + f"\n\nDetails: {settings.SITE_URL}/learning/drift/\n"
    )
    try:
        send_mail("TeleDerm: input drift alert", body, None, recipients)
    except Exception:  # noqa: BLE001 - a mail outage must not lose the stored alert
        logger.warning(
            "drift alert e-mail could not be sent to %d administrators", len(recipients), exc_info=True
        )
