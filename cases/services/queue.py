"""Handing work to the Celery workers. Cases know the tasks only by name: nothing here imports
``inference``. A broker outage is logged, not raised; the sweepers publish again later, so nothing is lost."""

import logging

from django.utils import timezone

from cases.models import Case

logger = logging.getLogger(__name__)

ANALYSE_CASE_TASK = "inference.tasks.analyse_case"
GENERATE_REPORT_TASK = "cases.reports.tasks.generate_report"


def enqueue_analysis(case_id: int) -> bool:
    """Publish ``analyse_case`` to the inference queue. Called on commit; a broker outage is logged, not
    raised: the case stays submitted and the sweeper publishes it again later, so no case is lost."""
    from teleder.celery import app

    try:
        app.send_task(ANALYSE_CASE_TASK, args=[case_id], queue="inference")
    except Exception:  # noqa: BLE001 - any broker failure must not fail the clinician's submit
        logger.warning(
            "could not enqueue analysis of case %s; the sweeper will retry", case_id, exc_info=True
        )
        return False
    Case.objects.filter(pk=case_id).update(enqueued_at=timezone.now())
    return True


def enqueue_report(review_id: int) -> bool:
    """Publish the report task; on a broker outage the sweeper picks the reviewed case up later."""
    from teleder.celery import app

    try:
        app.send_task(GENERATE_REPORT_TASK, args=[review_id], queue="default")
    except Exception:  # noqa: BLE001
        logger.warning(
            "could not enqueue the report of review %s; the sweeper will retry", review_id, exc_info=True
        )
        return False
    return True
