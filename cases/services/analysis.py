"""The declared interface between the cases and the AI: what an inference worker may do to a case.

``inference`` sits above ``cases`` and reaches it through this module only: claim a case, record its
results (one prediction per image, the case's risk and band) or fail it with a reason, and find work that a
lost broker message left behind. ``cases`` in turn knows the worker only by the task name it enqueues
(``cases.services.queue``). The risk-band rule is the model version's (``model_version.risk_band``).
"""

import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple, Protocol

from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from cases.audit import AuditAction, audit_record
from cases.models import Case, CaseStatus, Prediction
from cases.services.base import IllegalTransition, _check_transition, _transition
from cases.services.queue import enqueue_analysis
from cases.vocabulary import Assessment, CaseAssessment

__all__ = [
    "AnalysingModel",
    "IllegalTransition",
    "ImageResult",
    "StuckCase",
    "case_claim_for_analysis",
    "case_fail",
    "case_record_analysis",
    "cases_stuck_in_analysis",
    "enqueue_analysis",
]

logger = logging.getLogger(__name__)

CLAIMABLE = (CaseStatus.SUBMITTED, CaseStatus.ANALYSING)


class AnalysingModel(Protocol):
    """What recording needs of the model version that produced a result (``inference.models.ModelVersion``)."""

    pk: int
    threshold: float

    def risk_band(self, probability: float) -> str: ...


def case_claim_for_analysis(*, case_id: int, worker: str = "") -> Case | None:
    """Move a submitted (or stuck analysing) case to analysing; None if there is nothing to analyse.

    The claim is a conditional UPDATE on the status and attempt count that were read: when it changes no
    row, another worker claimed the case in between, and this one leaves it alone. No lock is held while
    the images are analysed. ``worker`` names the claiming worker (see ``inference.tasks.worker_identity``)
    so that the sweeper can tell a case whose worker died from one still being analysed.
    """
    case = Case.objects.filter(pk=case_id).first()
    if case is None or case.status not in CLAIMABLE:
        return None
    previous, attempts, now = case.status, case.analysis_attempts, timezone.now()
    with transaction.atomic():
        claimed = Case.objects.filter(pk=case_id, status=previous, analysis_attempts=attempts).update(
            status=CaseStatus.ANALYSING,
            analysis_attempts=F("analysis_attempts") + 1,
            analysis_started_at=now,
            analysis_worker=worker[:200],
            updated_at=now,
        )
        if not claimed:
            return None
        case.status, case.analysis_attempts = CaseStatus.ANALYSING, attempts + 1
        case.analysis_started_at = case.updated_at = now
        case.analysis_worker = worker[:200]
        if previous != CaseStatus.ANALYSING:
            audit_record(
                actor=None, action=AuditAction.CASE_STATUS, obj=case, **{"from": previous, "to": case.status}
            )
    return case


@dataclass(frozen=True)
class ImageResult:
    image_id: int
    probability: float
    member_probabilities: dict[str, float]
    latency_ms: float
    class_probabilities: dict[str, float] | None = None
    # The AI safety gate: a not-assessed image keeps no probability and does not count towards the case risk.
    assessment: str = Assessment.ASSESSED
    reasons: tuple[str, ...] = ()
    quality: dict | None = None
    ood_score: float | None = None
    # Where the model looked, as a PNG overlay (``inference.explain.overlay_png``); None when the model makes none.
    heatmap_png: bytes | None = None


def _store_heatmap(prediction: Prediction, png: bytes) -> None:
    """Write the overlay under a new name (never over an earlier one). A storage failure is logged and leaves
    the prediction without a map: the explanation must not hold back the result it explains."""
    from cases.services.cases import _storage_errors

    try:
        prediction.heatmap.save("heatmap.png", ContentFile(png), save=False)
    except _storage_errors() as exc:
        logger.warning(
            "heatmap of %s not stored (%s); the prediction has none", prediction, exc.__class__.__name__
        )
        prediction.heatmap = ""
    prediction.save(update_fields=["heatmap"])


@transaction.atomic
def case_record_analysis(
    *, case_id: int, model_version: AnalysingModel, results: Sequence[ImageResult]
) -> Case:
    """Store one prediction per image (idempotent per image and model version) and move the case on to
    awaiting review with its maximum risk and band. The bands come from ``model_version.risk_band``: the
    rule lives with the model package, not here."""
    case = Case.objects.select_for_update().get(pk=case_id)
    if case.status != CaseStatus.ANALYSING:
        _check_transition(case, CaseStatus.AWAITING_REVIEW)
    image_ids = set(case.images.values_list("pk", flat=True))
    if {r.image_id for r in results} != image_ids:
        raise ValidationError("The analysis does not cover exactly the case's images.")
    for result in results:
        assessed = result.assessment == Assessment.ASSESSED
        prediction, _ = Prediction.objects.update_or_create(
            image_id=result.image_id,
            model_version=model_version,
            defaults={
                "probability": float(result.probability) if assessed else None,
                "risk_band": model_version.risk_band(result.probability) if assessed else "",
                "member_probabilities": {k: float(v) for k, v in result.member_probabilities.items()}
                if assessed
                else {},
                "class_probabilities": {k: float(v) for k, v in (result.class_probabilities or {}).items()}
                if assessed
                else {},
                "latency_ms": float(result.latency_ms),
                "assessment": result.assessment,
                "reasons": list(result.reasons),
                "quality": result.quality or {},
                "ood_score": result.ood_score,
                "heatmap": "",
            },
        )
        if assessed and result.heatmap_png:
            _store_heatmap(prediction, result.heatmap_png)
    # Only assessed images count: a case whose images all failed the gate has no risk and no band (never a
    # silent "low"); it still goes to the review queue, marked "AI could not assess".
    scored = [float(r.probability) for r in results if r.assessment == Assessment.ASSESSED]
    risk = max(scored) if scored else None
    case.risk = risk
    case.risk_band = model_version.risk_band(risk) if risk is not None else ""
    case.ai_assessment = (
        CaseAssessment.NOT_ASSESSED
        if not scored
        else CaseAssessment.ASSESSED
        if len(scored) == len(results)
        else CaseAssessment.PARTIAL
    )
    case.model_version = model_version
    case.analysed_at = timezone.now()
    case.failure_reason = ""
    _transition(
        case,
        CaseStatus.AWAITING_REVIEW,
        actor=None,
        update_fields=[
            "risk",
            "risk_band",
            "ai_assessment",
            "model_version",
            "analysed_at",
            "failure_reason",
        ],
        model=str(model_version),
        risk=None if risk is None else round(risk, 4),
        ai_assessment=case.ai_assessment,
        images_assessed=len(scored),
        images_not_assessed=len(results) - len(scored),
    )
    return case


@transaction.atomic
def case_fail(*, case_id: int, reason: str) -> Case:
    """Move a case to failed with a reason a person can act on."""
    case = Case.objects.select_for_update().get(pk=case_id)
    if case.status == CaseStatus.FAILED:
        return case
    case.failure_reason = reason.strip()[:2000] or "Analysis failed."
    _transition(
        case, CaseStatus.FAILED, actor=None, update_fields=["failure_reason"], reason=case.failure_reason
    )
    return case


class StuckCase(NamedTuple):
    case_id: int
    analysing: bool  # claimed by a worker that never finished (else: submitted, message lost)
    attempts: int


def cases_stuck_in_analysis(
    *,
    cutoff: datetime,
    grace: datetime | None = None,
    broker_data_since: datetime | None = None,
    live_workers: Collection[str] | None = None,
) -> list[StuckCase]:
    """Cases whose analysis a lost broker message or a dead worker left behind, oldest first.

    Stale: submitted or analysing with no progress and no publish since ``cutoff``. Lost, already once older
    than ``grace``: submitted and never published (the broker was down at submit), and analysing by a worker
    not among ``live_workers`` (``hostname:pid`` of current heartbeats; None when they cannot be read). Lost at
    once: submitted and published before ``broker_data_since`` (the broker restarted without its data).
    """
    stale = Q(status__in=CLAIMABLE, updated_at__lt=cutoff) & (
        Q(enqueued_at__isnull=True) | Q(enqueued_at__lt=cutoff)
    )
    lost = Q(pk__in=[])
    if grace is not None:
        lost = Q(status=CaseStatus.SUBMITTED, enqueued_at__isnull=True, updated_at__lt=grace)
        if live_workers is not None:
            lost |= (
                Q(status=CaseStatus.ANALYSING, analysis_started_at__lt=grace)
                & ~Q(analysis_worker="")
                & ~Q(analysis_worker__in=live_workers)
            )
    if broker_data_since is not None:  # published before the broker's current data began: the message is gone
        lost |= Q(status=CaseStatus.SUBMITTED, enqueued_at__lt=broker_data_since)
    rows = (
        Case.objects.filter(lost | stale)
        .order_by("created_at")
        .values_list("pk", "status", "analysis_attempts")
    )
    return [StuckCase(pk, status == CaseStatus.ANALYSING, attempts) for pk, status, attempts in rows]
