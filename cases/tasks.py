"""Workflow tasks (queue ``default``): send one notification, and the periodic workflow sweep. Thin."""

import logging
import random

from celery import shared_task

from cases import notifications, staging

logger = logging.getLogger(__name__)


@shared_task(
    bind=True,
    name="cases.tasks.send_notification",
    acks_late=True,
    soft_time_limit=30,
    time_limit=60,
    max_retries=notifications.MAX_ATTEMPTS - 1,
    ignore_result=True,
)
def send_notification(self, notification_id: int) -> str:
    """Send one e-mail; a failure is recorded on the outbox row and retried with backoff."""
    try:
        return notifications.notification_send(notification_id=int(notification_id))
    except Exception as exc:
        if self.request.retries >= self.max_retries:
            logger.error("notification %s failed for good: %s", notification_id, exc)
            return "failed"
        countdown = min(30.0 * 2**self.request.retries, 1800.0) * random.uniform(0.8, 1.2)
        logger.warning("notification %s failed, retrying in %.0f s: %s", notification_id, countdown, exc)
        raise self.retry(exc=exc, countdown=countdown) from exc


@shared_task(name="cases.tasks.sweep_workflow", ignore_result=True, soft_time_limit=120, time_limit=150)
def sweep_workflow() -> dict:
    """Periodic (Celery beat): alerts for cases waiting past their target, lost notifications, and staged
    upload images older than an hour."""
    waiting = notifications.notify_waiting_cases()
    resent = notifications.notifications_resend_pending()
    removed = staging.staged_images_sweep()
    return {"waiting_alerts": len(waiting), "notifications_resent": len(resent), "staged_removed": removed}
