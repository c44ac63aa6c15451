"""The sweeper publishes lost work at once, without waiting for TELEDER_STUCK_AFTER_S: cases never published
(broker down at submit), cases whose message the broker lost (restart without persistence) and cases whose
worker died mid-analysis. Real broker; the worker side is covered by tests/faults."""

import json
import time

import pytest
from django.utils import timezone

from cases import services as case_services
from cases.models import Case
from inference import broker, heartbeat
from inference.services import cases_sweep_stuck
from tests.support.workers import purge_queues


def queued(queue: str = "inference") -> int:
    from teleder.celery import app

    with app.connection_for_write() as conn:
        return conn.default_channel.client.llen(queue)


@pytest.fixture
def queues(settings):
    settings.TELEDER_STUCK_AFTER_S = 600
    settings.TELEDER_PUBLISH_GRACE_S = 5
    purge_queues()
    cases_sweep_stuck()  # the marker key exists from here on, as after any earlier sweep
    yield
    purge_queues()


def age(case: Case, seconds: float) -> None:
    Case.objects.filter(pk=case.pk).update(updated_at=timezone.now() - timezone.timedelta(seconds=seconds))


def test_a_case_never_published_is_published_after_the_grace_not_the_stuck_timeout(make_case, queues):
    unpublished = make_case(1)  # analyse=False: as if the broker was down at submit
    assert cases_sweep_stuck().analyses_enqueued == []  # within the grace: the submit may still publish
    age(unpublished, 6)
    assert cases_sweep_stuck().analyses_enqueued == [unpublished.pk]
    unpublished.refresh_from_db()
    assert unpublished.enqueued_at is not None and queued() == 1
    assert cases_sweep_stuck().analyses_enqueued == []  # published: not again


def test_cases_whose_messages_the_broker_lost_are_published_again_once(make_case, queues):
    published = make_case(1)
    case_services.enqueue_analysis(published.pk)
    assert cases_sweep_stuck().analyses_enqueued == []  # its message is still queued
    # A broker restart without persistence: the queue and the marker are gone. The server's data "began"
    # after the case was published (pretend it was published before the server's start).
    purge_queues()
    broker.broker_redis().delete(broker.EPOCH_KEY)
    uptime = int(broker.broker_redis().info("server")["uptime_in_seconds"])
    Case.objects.filter(pk=published.pk).update(
        enqueued_at=timezone.now() - timezone.timedelta(seconds=uptime + 10)
    )
    assert cases_sweep_stuck().analyses_enqueued == [published.pk]
    assert queued() == 1
    assert cases_sweep_stuck().analyses_enqueued == []  # published again after the loss: exactly once


def test_an_analysing_case_whose_worker_died_is_published_again_at_once(make_case, queues, settings):
    settings.TELEDER_HEARTBEAT_INTERVAL_S = 10
    alive = "alive@test:1"
    heartbeat.redis_client().set(
        heartbeat.KEY_PREFIX + "alive@test",
        json.dumps({"hostname": "alive@test", "pid": 1, "queues": ["inference"], "at": time.time()}),
        ex=30,
    )
    try:
        running = make_case(1)
        orphaned = make_case(1)
        case_services.case_claim_for_analysis(case_id=running.pk, worker=alive)
        case_services.case_claim_for_analysis(case_id=orphaned.pk, worker="killed@test:2")
        for case in (running, orphaned):
            Case.objects.filter(pk=case.pk).update(
                analysis_started_at=timezone.now() - timezone.timedelta(seconds=6)
            )
        assert cases_sweep_stuck().analyses_enqueued == [orphaned.pk]
    finally:
        heartbeat.redis_client().delete(heartbeat.KEY_PREFIX + "alive@test")


def test_admins_see_the_queue_outage_and_clinicians_a_delayed_result(
    make_case, client, clinician, platform_admin, settings
):
    from django.urls import reverse

    settings.TELEDER_PUBLISH_GRACE_S = 5
    queued_case = make_case(1)
    Case.objects.filter(pk=queued_case.pk).update(enqueued_at=timezone.now())
    client.force_login(platform_admin)
    assert b"Analysis queue unavailable" not in client.get(reverse("home")).content

    delayed = make_case(1)  # never published: the broker was down at submit
    age(delayed, 60)
    since = Case.objects.get(pk=delayed.pk).updated_at
    page = client.get(reverse("home")).content.decode()
    assert f"Analysis queue unavailable since {since:%Y-%m-%d %H:%M:%S}" in page

    client.force_login(clinician)
    assert "Analysis queue unavailable" not in client.get(reverse("home")).content.decode()
    assert "AI result delayed" in client.get(reverse("case_detail", args=[delayed.pk])).content.decode()
    assert (
        "AI result delayed" not in client.get(reverse("case_detail", args=[queued_case.pk])).content.decode()
    )
    assert "AI result delayed" in client.get(reverse("case_list")).content.decode()


def test_the_api_status_says_when_the_ai_result_is_delayed(make_case, clinician, settings):
    from rest_framework.test import APIClient

    from tests.cases.api.conftest import login

    settings.TELEDER_PUBLISH_GRACE_S = 5
    delayed = make_case(1)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {login(api, clinician.username)['access']}")
    assert api.get(f"/api/v1/cases/{delayed.pk}/status/").json()["analysis_delayed"] is False  # just stored
    age(delayed, 60)
    assert api.get(f"/api/v1/cases/{delayed.pk}/status/").json()["analysis_delayed"] is True
    Case.objects.filter(pk=delayed.pk).update(enqueued_at=timezone.now())  # the sweeper published it
    assert api.get(f"/api/v1/cases/{delayed.pk}/status/").json()["analysis_delayed"] is False
