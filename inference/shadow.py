"""Champion / challenger: a candidate must earn activation on the platform's own reviewed cases.

``shadow_evaluate`` scores the candidate and the active version on the same recently reviewed cases (the
dermatologist's malignant call on the current review is the reference; a case's risk is the maximum over its
images, as in the analysis), stores the comparison and never touches stored predictions. ``activation_refusal``
is what ``model_activate`` asks before switching: a candidate whose sensitivity on those cases is lower than the
active model's by more than ``TELEDER_ACTIVATION_MAX_SENSITIVITY_DROP`` is refused unless forced with a reason.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

import numpy as np
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone

from cases.audit import AuditAction, audit_record
from cases.models import CaseStatus, Review
from inference.models import ModelVersion, ShadowEvaluation
from inference.preprocessing import PreprocessingError, load_image
from inference.registry import ensemble_for
from inference.selectors import active_model_version

logger = logging.getLogger(__name__)

SUMMARY_KEYS = (
    "n",
    "positives",
    "threshold",
    "auc",
    "sensitivity",
    "sensitivity_ci95",
    "specificity",
    "specificity_ci95",
    "ece",
)


@dataclass(frozen=True)
class ScoredCase:
    case_id: int
    malignant: bool
    risks: dict[int, float]  # model version id -> case risk


def _reviewed_cases(days: int):
    since = timezone.now() - dt.timedelta(days=days)
    return (
        Review.objects.filter(
            superseded_by__isnull=True,
            case__status__in=(CaseStatus.REVIEWED, CaseStatus.REPORTED),
            created_at__gte=since,
        )
        .select_related("case")
        .prefetch_related("case__images")
        .order_by("pk")
    )


def _score(versions: list[ModelVersion], days: int) -> tuple[list[ScoredCase], int]:
    ensembles = {v.pk: ensemble_for(v) for v in versions}
    scored, skipped = [], 0
    for review in _reviewed_cases(days).iterator(chunk_size=200):
        case = review.case
        try:
            images = []
            for image in sorted(case.images.all(), key=lambda i: i.position):
                with image.file.open("rb") as handle:
                    images.append(load_image(handle.read()))
        except (OSError, PreprocessingError):
            skipped += 1
            continue
        if not images:
            skipped += 1
            continue
        metadata = [(case.age_at_submission, case.sex_at_submission, case.site_at_submission)] * len(images)
        risks = {}
        for pk, ensemble in ensembles.items():
            outcomes, _ = ensemble.run(ensemble.prepare(images, metadata))
            risks[pk] = max(float(o.probability) for o in outcomes)
        scored.append(ScoredCase(case.pk, bool(review.malignant), risks))
    return scored, skipped


def _summary(scored: list[ScoredCase], version: ModelVersion) -> dict:
    from training.evaluate import binary_metrics  # pure numpy metrics, shared with training's reports

    labels = np.array([c.malignant for c in scored], dtype=bool)
    risks = np.array([c.risks[version.pk] for c in scored], dtype=np.float64)
    metrics = binary_metrics(labels, risks, version.threshold)
    return {"model_version": str(version), **{k: metrics[k] for k in SUMMARY_KEYS}}


def shadow_evaluate(*, candidate: ModelVersion, days: int = 90, actor=None) -> ShadowEvaluation:
    """Score ``candidate`` (and the active version) on the reviewed cases of the last ``days`` days."""
    if days < 1:
        raise ValidationError("days must be at least 1.")
    active = active_model_version()
    if active is not None and active.pk == candidate.pk:
        raise ValidationError(f"{candidate} is the active model: evaluate a candidate against it instead.")
    versions = [candidate] + ([active] if active is not None else [])
    scored, skipped = _score(versions, days)
    if not scored:
        raise ValidationError(f"No reviewed case in the last {days} days could be scored.")
    metrics = {"candidate": _summary(scored, candidate), "skipped_cases": skipped}
    if active is not None:
        metrics["active"] = _summary(scored, active)
    evaluation = ShadowEvaluation.objects.create(
        candidate=candidate, baseline=active, days=days, cases=len(scored), metrics=metrics, created_by=actor
    )
    audit_record(
        actor=actor,
        action=AuditAction.MODEL_SHADOW_EVALUATE,
        obj=candidate,
        baseline=str(active) if active else None,
        cases=len(scored),
        candidate_sensitivity=metrics["candidate"]["sensitivity"],
        active_sensitivity=metrics.get("active", {}).get("sensitivity"),
    )
    return evaluation


def activation_refusal(target: ModelVersion) -> str | None:
    """Why activating ``target`` must be refused (a measured sensitivity drop), or None."""
    active = active_model_version()
    if active is None or active.pk == target.pk:
        return None
    evaluation = target.shadow_evaluations.filter(baseline=active).first()
    if evaluation is None:
        return None
    candidate_sens = evaluation.metrics.get("candidate", {}).get("sensitivity")
    active_sens = evaluation.metrics.get("active", {}).get("sensitivity")
    if candidate_sens is None or active_sens is None:
        return None
    allowed = float(settings.TELEDER_ACTIVATION_MAX_SENSITIVITY_DROP)
    if active_sens - candidate_sens > allowed + 1e-12:
        return (
            f"{target} missed more malignant lesions than the active {active} on the {evaluation.cases} reviewed "
            f"cases of its shadow evaluation: sensitivity {candidate_sens:.3f} vs {active_sens:.3f} "
            f"(allowed drop {allowed:.3f})"
        )
    return None
