"""The Celery application. Tasks live in each app's ``tasks.py`` and stay thin: they call services."""

import os

from celery import Celery
from celery.signals import before_task_publish, task_prerun

# Must be set before the app is created so that `delay_on_commit` sees Django's settings.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "teleder.settings")

app = Celery("teleder")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["inference", "cases.reports"])


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
