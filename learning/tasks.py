"""Celery tasks of the learning loop (thin: they call learning.monitoring)."""

from celery import shared_task

from learning.monitoring import drift_check


@shared_task(name="learning.tasks.check_drift", soft_time_limit=1800, time_limit=1900)
def check_drift() -> dict:
    snapshots = drift_check()
    return {"snapshots": len(snapshots), "alerts": sum(1 for s in snapshots if s.alerts)}
