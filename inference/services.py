"""Analysis of one case and the sweeper that makes sure no case is lost. Celery tasks call these.

The cases are reached through their declared interface only (``cases.services.analysis``).

``case_analyse``: claim the case, read its stored images, run the active ensemble on all of them as one
batch and record the results. Permanent problems (no active model, an unreadable or missing image, a model
that fails or returns something that is not a probability) move the case to failed with a reason a person can
act on. Transient problems (database or storage unavailable) propagate as exceptions so that the task retries.
"""

import logging
import os
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DatabaseError
from django.utils import timezone
from PIL import Image

from cases.services.analysis import (
    IllegalTransition,
    ImageResult,
    case_claim_for_analysis,
    case_fail,
    case_record_analysis,
    cases_stuck_in_analysis,
    enqueue_analysis,
)
from cases.vocabulary import Assessment
from inference.explain import overlay_png
from inference.package import PackageError, gate_quality_thresholds
from inference.preprocessing import PreprocessingError, load_image
from inference.quality import DEFAULT_THRESHOLDS, failed_reasons, quality_checks
from inference.registry import ensemble_for
from inference.runtime import ImageOutcome, ModelError
from inference.selectors import active_model_version
from similarity.embedding import Embeddings, embeddings_from_run
from similarity.store import case_embeddings_record

logger = logging.getLogger(__name__)

# Test-only: seconds to sleep after claiming a case, so that tests can kill a worker mid-task. Ignored
# outside the test settings.
TEST_DELAY_ENV = "TELEDER_TEST_ANALYSIS_DELAY_S"


NO_ACTIVE_MODEL = (
    "No AI model is active. An administrator must activate one (manage.py activate_model) "
    "and then retry this case."
)


class TransientAnalysisError(Exception):
    """Something outside the case failed (storage unreachable): retry later, do not fail the case."""


def analysis_fail(case_id: int, reason: str) -> Any:
    """Fail the case with ``reason`` unless another run has already moved it on."""
    try:
        return case_fail(case_id=case_id, reason=reason)
    except IllegalTransition:  # another run finished the case meanwhile
        return None


def _test_delay() -> None:
    if settings.TESTING and os.environ.get(TEST_DELAY_ENV):
        time.sleep(float(os.environ[TEST_DELAY_ENV]))


def _read_image(image: Any) -> bytes:
    try:
        with image.file.open("rb") as handle:
            return handle.read()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise TransientAnalysisError(f"image {image.pk} could not be read from storage: {exc}") from exc


def case_analyse(*, case_id: int, worker: str = "") -> Any:
    """Analyse one case; return it (awaiting review or failed), or None if there was nothing to do."""
    case = case_claim_for_analysis(case_id=case_id, worker=worker)
    if case is None:
        return None
    _test_delay()
    version = active_model_version()
    if version is None:
        return analysis_fail(case_id, NO_ACTIVE_MODEL)
    try:
        ensemble = ensemble_for(version)
    except (PackageError, ValueError) as exc:
        return analysis_fail(case_id, f"The active model {version} could not be loaded: {exc}.")
    images = list(case.images.order_by("position"))
    if not images:
        return analysis_fail(case_id, "The case has no images to analyse.")
    decoded = []
    for image in images:
        label = f"Image {image.position + 1}"
        try:
            decoded.append(load_image(_read_image(image)))
        except FileNotFoundError:
            return analysis_fail(
                case_id, f"{label} of this case is missing from storage; it must be uploaded again."
            )
        except PreprocessingError:
            return analysis_fail(
                case_id,
                f"{label} of this case is damaged in storage and cannot be decoded; "
                "it must be uploaded again.",
            )
    metadata = [(case.age_at_submission, case.sex_at_submission, case.site_at_submission)] * len(images)
    try:
        inputs = ensemble.prepare(decoded, metadata)
    except PreprocessingError as exc:
        return analysis_fail(
            case_id, f"The case's images or patient details cannot be prepared for the model: {exc}."
        )
    try:
        # One session run gives the probabilities and the pooled features: the AI gate scores them, and the
        # similarity library stores them (``similarity.store``) once the results are recorded.
        outcomes, features, model_ms = ensemble.run_with_features(inputs)
        if ensemble.ood is not None and features:
            scores = ensemble.ood.score(features)
            outcomes = [replace(o, ood_score=float(s)) for o, s in zip(outcomes, scores, strict=True)]
    except ModelError as exc:
        return analysis_fail(case_id, f"The model {version} failed on this case: {exc}.")
    per_image_ms = model_ms / len(images)
    thresholds = _gate_thresholds(ensemble)
    results = []
    for image, picture, outcome in zip(images, decoded, outcomes, strict=True):
        gate = gate_assess(picture, outcome, thresholds, ensemble.ood.threshold if ensemble.ood else None)
        results.append(
            ImageResult(
                image_id=image.pk,
                probability=outcome.probability,
                member_probabilities=outcome.member_probabilities,
                class_probabilities=outcome.class_probabilities,
                latency_ms=per_image_ms,
                assessment=gate.assessment,
                reasons=gate.reasons,
                quality=gate.quality,
                ood_score=gate.ood_score,
                heatmap_png=overlay_png(outcome.heatmap, picture.width, picture.height)
                if outcome.heatmap is not None and gate.assessment == Assessment.ASSESSED
                else None,
            )
        )
    try:
        recorded = case_record_analysis(case_id=case_id, model_version=version, results=results)
    except IllegalTransition:
        return None
    except ValidationError as exc:
        return analysis_fail(case_id, f"The analysis could not be stored: {' '.join(exc.messages)}")
    _store_embeddings(version, images, embeddings_from_run(ensemble, outcomes, features))
    return recorded


def _store_embeddings(version: Any, images: list, embeddings: Embeddings | None) -> None:
    """The case images' retrieval embeddings for the similarity library. A failure here never fails the
    analysed case: the library's recompute task fills what is missing (``similarity.tasks``)."""
    if embeddings is None:
        return
    try:
        case_embeddings_record(
            model_version_id=version.pk,
            method=embeddings.method,
            image_ids=[image.pk for image in images],
            vectors=embeddings.vectors,
        )
    except DatabaseError:
        logger.warning("could not store the embeddings of %s images", len(images), exc_info=True)


@dataclass(frozen=True)
class GateOutcome:
    assessment: str
    reasons: tuple[str, ...]
    quality: dict
    ood_score: float | None


def _gate_thresholds(ensemble) -> dict[str, float]:
    try:
        return gate_quality_thresholds(ensemble.manifest)
    except PackageError:  # refused at registration; a package stored before the gate keeps the defaults
        return dict(DEFAULT_THRESHOLDS)


def gate_assess(
    image: Image.Image, outcome: ImageOutcome, thresholds: dict[str, float], ood_threshold: float | None
) -> GateOutcome:
    """The AI safety gate for one image: the quality checks, then the OOD score (when the package has one).
    Any failure makes the image ``not_assessed`` with machine-readable reasons."""
    checks = quality_checks(image, thresholds)
    reasons = failed_reasons(checks)
    score = outcome.ood_score
    if ood_threshold is not None and score is not None and score > ood_threshold:
        reasons.append("not_dermoscopy")
    quality = {check.name: check.to_dict() for check in checks}
    assessment = Assessment.NOT_ASSESSED if reasons else Assessment.ASSESSED
    return GateOutcome(assessment, tuple(reasons), quality, None if score is None else round(float(score), 4))


@dataclass
class SweepResult:
    analyses_enqueued: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)


def _live_workers() -> set[str] | None:
    """``hostname:pid`` of every worker with a current heartbeat; None when heartbeats cannot be read."""
    from inference import heartbeat

    try:
        return {f"{w.get('hostname')}:{w.get('pid')}" for w in heartbeat.workers_alive()}
    except Exception:  # noqa: BLE001 - without heartbeats only the stuck timeout applies
        logger.warning("sweeper: worker heartbeats unavailable", exc_info=True)
        return None


def _broker_data_since(now: datetime) -> datetime | None:
    from inference import broker

    try:
        return broker.data_since(now=now)
    except Exception:  # noqa: BLE001 - broker down: nothing can be published now; the next sweep looks again
        logger.warning("sweeper: the broker cannot be asked about lost messages", exc_info=True)
        return None


def cases_sweep_stuck(*, now: datetime | None = None) -> SweepResult:
    """Re-enqueue analyses whose broker message may have been lost.

    At once, without waiting for the stuck timeout: submitted cases never published (``enqueued_at`` empty: the
    broker was down at submit) once older than ``TELEDER_PUBLISH_GRACE_S``; submitted cases published before the
    broker's current data began (a restart without persistence: ``inference.broker``); analysing cases whose
    claiming worker has no heartbeat any more (killed), once claimed longer than the grace. After
    ``TELEDER_STUCK_AFTER_S`` without progress, any submitted or analysing case. A case claimed
    ``TELEDER_MAX_ANALYSIS_ATTEMPTS`` times without finishing is failed instead, so that an image that kills the
    worker cannot loop for ever. A second message for a case is harmless: the claim and the per-image results
    are idempotent, so a case is still analysed into one result set. Reports lost the same way are the reports
    area's sweep (``cases.reports.tasks.sweep_missing_reports``).
    """
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.TELEDER_STUCK_AFTER_S)
    grace = now - timedelta(seconds=settings.TELEDER_PUBLISH_GRACE_S)
    max_attempts = settings.TELEDER_MAX_ANALYSIS_ATTEMPTS
    result = SweepResult()
    stuck = cases_stuck_in_analysis(
        cutoff=cutoff, grace=grace, broker_data_since=_broker_data_since(now), live_workers=_live_workers()
    )
    for case_id, analysing, attempts in stuck:
        if analysing and attempts >= max_attempts:
            reason = (
                f"The analysis did not finish in {attempts} attempts (the worker was lost or timed out each time). "
                "An administrator can retry the case."
            )
            if analysis_fail(case_id, reason) is not None:
                result.failed.append(case_id)
            continue
        if enqueue_analysis(case_id):
            result.analyses_enqueued.append(case_id)
    if result.analyses_enqueued or result.failed:
        logger.warning("sweeper: re-enqueued analyses %s; failed %s", result.analyses_enqueued, result.failed)
    return result
