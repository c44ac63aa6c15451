"""The report task (queue ``default``). Thin: it calls ``report_generate`` and decides only about retrying.

Every failed attempt is written to ``Case.report_error`` so that administrators see it on the failed-work
pages; the case stays reviewed until a report is stored (``sweep_missing_reports`` enqueues it again later).
"""

import logging
import random

from celery import shared_task
from celery.signals import worker_ready
from django.core.exceptions import ValidationError
from django.db import connections

from cases.models import Review
from cases.reports import services
from cases.reports.signing import SigningError
from cases.services import case_record_report_error

logger = logging.getLogger(__name__)

MAX_RETRIES = 5


def retry_delay_s(retries: int) -> float:
    """Exponential backoff with jitter: about 10, 20, 40, 80, 160 s."""
    return min(10.0 * 2**retries, 600.0) * random.uniform(0.8, 1.2)


def _describe(exc: Exception) -> str:
    if isinstance(exc, (SigningError, ValidationError)):
        return "; ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
    return f"{type(exc).__name__}: {exc}"


@shared_task(
    bind=True,
    name="cases.reports.tasks.generate_report",
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=120,
    time_limit=180,
    max_retries=MAX_RETRIES,
    ignore_result=True,
)
def generate_report(self, review_id: int) -> str | None:
    """Render, sign and store the report of review ``review_id``; returns the report's uid."""
    try:
        report = services.report_generate(review_id=int(review_id))
    except Review.DoesNotExist:
        logger.warning("report task for review %s: no such review", review_id)
        return None
    except ValidationError as exc:  # the case's state does not allow a report: trying again will not help
        case_id = Review.objects.filter(pk=review_id).values_list("case_id", flat=True).first()
        logger.warning("report of review %s not generated: %s", review_id, _describe(exc))
        if case_id is not None:
            case_record_report_error(case_id=case_id, error=f"Report not generated: {_describe(exc)}")
        return None
    except Exception as exc:
        case_id = Review.objects.filter(pk=review_id).values_list("case_id", flat=True).first()
        attempt, attempts = self.request.retries + 1, MAX_RETRIES + 1
        final = self.request.retries >= MAX_RETRIES
        message = f"Report generation failed (attempt {attempt} of {attempts}): {_describe(exc)}"
        if final:
            message += " No more automatic retries; fix the cause, then the case is picked up again."
        if case_id is not None:
            case_record_report_error(case_id=case_id, error=message)
        if final:
            logger.exception("report of review %s failed %d times", review_id, attempts)
            return None
        logger.warning("report of review %s failed, retrying: %s", review_id, _describe(exc))
        raise self.retry(exc=exc, countdown=retry_delay_s(self.request.retries)) from exc
    return str(report.uid)


@shared_task(
    name="cases.reports.tasks.sweep_missing_reports", ignore_result=True, soft_time_limit=120, time_limit=150
)
def sweep_missing_reports() -> dict:
    """Periodic (Celery beat) and at worker start: re-enqueue reports whose message may have been lost."""
    return {"reports_enqueued": services.reports_sweep_missing()}


@worker_ready.connect
def _sweep_when_worker_starts(**_: object) -> None:
    # A worker that starts after a crash or a broker restart picks up lost reports without waiting for beat.
    try:
        sweep_missing_reports()
    except Exception:  # noqa: BLE001 - a failed sweep must not stop the worker; beat sweeps again later
        logger.exception("start-up report sweep failed")
    finally:
        connections.close_all()
