"""Celery tasks of the inference queue. Thin: they receive ids, call ``inference.services`` and decide only
about retrying. See docs/inference.md for the queue, retries and the sweeper."""

import logging
import os
import random

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import worker_process_init, worker_ready, worker_shutdown
from django.conf import settings
from django.db import InterfaceError, OperationalError, connections
from kombu.exceptions import OperationalError as BrokerError

from inference import heartbeat, services

logger = logging.getLogger(__name__)

# Errors worth another try: the database or the broker or storage was briefly away.
TRANSIENT_ERRORS = (
    OperationalError,
    InterfaceError,
    BrokerError,
    ConnectionError,
    TimeoutError,
    services.TransientAnalysisError,
)
MAX_RETRIES = 5
# The worker's main process id: prefork children learn it when they start (their parent), the solo pool is it.
_main_pid: int | None = None


def worker_identity(hostname: str) -> str:
    """``hostname:pid`` as the worker's heartbeat names it (inference.heartbeat), recorded on each claim."""
    return f"{hostname}:{_main_pid or os.getpid()}"


def retry_delay_s(retries: int) -> float:
    """Exponential backoff with jitter: about 2, 4, 8, 16, 32 s, capped at 5 minutes."""
    return min(2.0 ** (retries + 1), 300.0) * random.uniform(0.75, 1.25)


@shared_task(
    bind=True,
    name="inference.tasks.analyse_case",
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=settings.TELEDER_ANALYSIS_TIMEOUT_S,
    time_limit=settings.TELEDER_ANALYSIS_TIMEOUT_S + 30,
    max_retries=MAX_RETRIES,
    ignore_result=True,
)
def analyse_case(self, case_id: int) -> str:
    """Analyse case ``case_id`` with the active model. Running it twice stores one result set."""
    try:
        case = services.case_analyse(
            case_id=int(case_id), worker=worker_identity(self.request.hostname or "")
        )
    except SoftTimeLimitExceeded:
        timeout = settings.TELEDER_ANALYSIS_TIMEOUT_S
        services.analysis_fail(
            case_id,
            f"The analysis took longer than {timeout} s and was stopped. An administrator can retry the case.",
        )
        return "timed_out"
    except TRANSIENT_ERRORS as exc:
        if self.request.retries >= MAX_RETRIES:
            logger.exception("analysis of case %s failed %d times", case_id, self.request.retries + 1)
            services.analysis_fail(
                case_id,
                f"The analysis kept failing because of a temporary error ({exc}). "
                "An administrator can retry the case.",
            )
            return "failed"
        logger.warning("analysis of case %s hit a temporary error, retrying: %s", case_id, exc)
        raise self.retry(exc=exc, countdown=retry_delay_s(self.request.retries)) from exc
    return case.status if case is not None else "skipped"


@shared_task(
    name="inference.tasks.sweep_stuck_cases", ignore_result=True, soft_time_limit=120, time_limit=150
)
def sweep_stuck_cases() -> dict:
    """Periodic (Celery beat) and at worker start: re-enqueue cases whose message may have been lost."""
    result = services.cases_sweep_stuck()
    return {"analyses_enqueued": result.analyses_enqueued, "failed": result.failed}


@worker_ready.connect
def _start_heartbeat(sender=None, **_: object) -> None:
    # First of the start-up hooks: /readyz sees the worker while the sweeps run.
    queues = list(sender.app.amqp.queues.consume_from) if sender is not None else []
    heartbeat.start(sender.hostname, queues)


@worker_shutdown.connect
def _stop_heartbeat(sender=None, **_: object) -> None:
    heartbeat.stop(getattr(sender, "hostname", None) or "")


@worker_ready.connect
def _sweep_when_worker_starts(**_: object) -> None:
    # A worker that starts after a crash or a broker restart picks up what was lost, without waiting for beat.
    try:
        sweep_stuck_cases()
    except Exception:  # noqa: BLE001 - a failed sweep must not stop the worker; beat sweeps again later
        logger.exception("start-up sweep failed")
    finally:
        connections.close_all()


@worker_process_init.connect
def _load_active_model(**_: object) -> None:
    # Prefork children load the active ensemble before their first case, so the first case is not slow.
    global _main_pid
    _main_pid = os.getppid()
    from inference.registry import ensemble_for
    from inference.selectors import active_model_version

    try:
        version = active_model_version()
        if version is not None:
            # A warm-up batch of the largest case size: the first real case then runs at steady speed.
            ensemble_for(version).warm_up(settings.TELEDER_MAX_IMAGES_PER_CASE)
    except Exception:  # noqa: BLE001 - the task reports the problem on the case itself
        logger.warning("could not preload the active model", exc_info=True)
    finally:
        connections.close_all()
