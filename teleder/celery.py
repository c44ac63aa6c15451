"""The Celery application. Tasks live in each app's ``tasks.py`` and stay thin: they call services."""

import os

from celery import Celery
from celery.signals import (
    before_task_publish,
    setup_logging,
    task_postrun,
    task_prerun,
)

# Must be set before the app is created so that `delay_on_commit` sees Django's settings.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "teleder.settings")

app = Celery("teleder")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["inference", "cases.reports", "cases", "learning", "similarity"])


@before_task_publish.connect
def _carry_request_id(headers: dict | None = None, **_: object) -> None:
    """Carry the web request's id into the task so logs of both can be joined."""
    from teleder.context import current_request_id

    request_id = current_request_id()
    if headers is not None and request_id:
        headers.setdefault("teleder_request_id", request_id)


@task_prerun.connect
def _adopt_request_id(task=None, **_: object) -> None:
    from teleder.context import set_request_context

    request_id = getattr(task.request, "teleder_request_id", None) if task else None
    set_request_context(request_id=request_id, ip_address=None)


# Operations: worker heartbeats (inference/heartbeat.py, started and stopped by inference/tasks.py) and
# logging through Django's LOGGING (JSON lines with request ids) instead of Celery's own root-logger setup.
app.autodiscover_tasks(["inference"], related_name="heartbeat")


@setup_logging.connect
def _use_django_logging(**_: object) -> None:
    """Connecting this signal stops Celery from replacing the root logger; Django's LOGGING stays in force."""
    import logging.config

    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)


@task_postrun.connect
def _forget_request_id(**_: object) -> None:
    from teleder.context import set_request_context

    set_request_context(request_id=None, ip_address=None)
