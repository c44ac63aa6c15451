"""Celery tasks of the similarity library. Thin: they call ``similarity.services``.

``recompute_embeddings`` is published (by name) when a model version is activated: it computes the library's
missing embeddings for that version one chunk at a time and publishes itself again until none is missing,
so a worker restart loses at most one chunk (the next publish, or the sweep, resumes from the database).
"""

import logging

from celery import shared_task
from django.conf import settings

from inference.selectors import active_model_version
from similarity import pgvector, services

logger = logging.getLogger(__name__)

RECOMPUTE_TASK = "similarity.tasks.recompute_embeddings"  # inference.registry publishes it by this name


def enqueue_recompute(model_version_id: int) -> bool:
    """Publish the next chunk; a broker outage is logged (the sweep publishes it again)."""
    from teleder.celery import app

    try:
        app.send_task(RECOMPUTE_TASK, args=[model_version_id], queue="inference")
    except Exception:  # noqa: BLE001 - the sweep resumes from the database
        logger.warning("could not enqueue the similarity recompute of %s", model_version_id, exc_info=True)
        return False
    return True


@shared_task(name=RECOMPUTE_TASK, ignore_result=True, soft_time_limit=600, time_limit=660)
def recompute_embeddings(model_version_id: int) -> dict:
    """One chunk of the library's missing embeddings for the active version; publishes the next chunk."""
    version = active_model_version()
    if version is None or version.pk != int(model_version_id):
        return {"skipped": "not the active model version"}
    if pgvector.ensure_column():
        pgvector.backfill()
    result = services.embeddings_compute_missing(
        model_version=version, limit=settings.TELEDER_SIMILARITY_CHUNK
    )
    # Nothing computed in a whole chunk: the package has no features or the rest is unreadable; stop here.
    if result.remaining and result.computed:
        enqueue_recompute(version.pk)
    logger.info("similarity: %s computed, %s remaining for %s", result.computed, result.remaining, version)
    return {"computed": result.computed, "remaining": result.remaining, "skipped": result.skipped}


@shared_task(name="similarity.tasks.sweep_missing_embeddings", ignore_result=True)
def sweep_missing_embeddings() -> dict:
    """Resume a recompute that a lost message or a dead worker left unfinished (Celery beat)."""
    version = active_model_version()
    if version is None:
        return {}
    missing, references = services.selectors.images_missing_embeddings(model_version=version, limit=1)
    if missing or references:
        enqueue_recompute(version.pk)
    return {"resumed": bool(missing or references)}
