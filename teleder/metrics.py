"""/metrics in the Prometheus text format: django-prometheus's request metrics plus TeleDerm's own gauges.

The platform gauges are read when Prometheus scrapes (one small query each), so every web process reports
the same numbers: queue length per Celery queue, cases per status, the time from submission to AI result
(a histogram over the last 24 hours), report generation failures waiting for a retry, and open drift alerts.
Access: with ``TELEDER_METRICS_TOKEN`` set, a request must carry ``Authorization: Bearer <token>``; without
it only loopback and private addresses may scrape.
"""

from __future__ import annotations

import datetime as dt
import hmac
import ipaddress
import logging

from django.conf import settings
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily

logger = logging.getLogger(__name__)

QUEUES = ("inference", "default")
# Loopback and the private ranges of RFC 1918 / RFC 4193 (Python's is_private also counts documentation ranges).
INTERNAL_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in ("127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "::1/128", "fc00::/7")
)
ANALYSIS_BUCKETS_S = (1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


def _queue_lengths() -> dict[str, int] | None:
    from teleder.celery import app

    try:
        with app.connection_for_read() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0.1, timeout=0.5)
            client = conn.default_channel.client
            return {queue: int(client.llen(queue)) for queue in QUEUES}
    except Exception:  # noqa: BLE001 - a broker outage is a metric, not an error page
        logger.warning("metrics: the broker could not be read")
        return None


class PlatformCollector:
    """Reads the platform's state at scrape time."""

    def describe(self):
        # Registering a collector without describe() makes prometheus_client call collect() at import time,
        # which would query the database and the broker while Django is still starting.
        return []

    def collect(self):
        from cases.models import Case, Prediction
        from learning.models import DriftSnapshot

        lengths = _queue_lengths()
        up = GaugeMetricFamily("teleder_broker_up", "1 when the broker answered this scrape")
        up.add_metric([], 0 if lengths is None else 1)
        yield up
        queue = GaugeMetricFamily(
            "teleder_queue_length", "Messages waiting per Celery queue", labels=["queue"]
        )
        for name, length in (lengths or {}).items():
            queue.add_metric([name], length)
        yield queue

        cases = GaugeMetricFamily("teleder_cases", "Cases per status", labels=["status"])
        for row in Case.objects.values("status").annotate(n=Count("pk")).order_by("status"):
            cases.add_metric([row["status"]], row["n"])
        yield cases

        failures = GaugeMetricFamily(
            "teleder_report_generation_failures", "Reviewed cases whose last report generation failed"
        )
        failures.add_metric([], Case.objects.exclude(report_error="").count())
        yield failures

        since = timezone.now() - dt.timedelta(hours=24)
        waits = [
            (analysed - created).total_seconds()
            for created, analysed in Case.objects.filter(analysed_at__gte=since).values_list(
                "created_at", "analysed_at"
            )
        ]
        buckets = []
        for bound in ANALYSIS_BUCKETS_S:
            buckets.append((str(bound), sum(1 for w in waits if w <= bound)))
        buckets.append(("+Inf", len(waits)))
        total = sum(waits)
        histogram = HistogramMetricFamily(
            "teleder_analysis_seconds",
            "Time from submission to AI result, cases analysed in the last 24 hours",
        )
        histogram.add_metric([], buckets, total)
        yield histogram

        rejected = GaugeMetricFamily(
            "teleder_gate_rejections",
            "Images the AI safety gate could not assess in the last 24 hours, by reason",
            labels=["reason"],
        )
        counts: dict[str, int] = {}
        for reasons in Prediction.objects.filter(
            created_at__gte=since, assessment="not_assessed"
        ).values_list("reasons", flat=True):
            for reason in reasons or ["unspecified"]:
                counts[reason] = counts.get(reason, 0) + 1
        for reason, n in sorted(counts.items()):
            rejected.add_metric([reason], n)
        yield rejected

        latest = {}
        for snapshot in DriftSnapshot.objects.order_by("model_version_id", "organization_id", "-created_at"):
            latest.setdefault((snapshot.model_version_id, snapshot.organization_id), snapshot)
        alerts = GaugeMetricFamily("teleder_drift_alerts", "Features alerting in the latest drift snapshots")
        alerts.add_metric([], sum(len(s.alerts) for s in latest.values()))
        yield alerts


_collector = PlatformCollector()
REGISTRY.register(_collector)


def _allowed(request: HttpRequest) -> bool:
    token = settings.TELEDER_METRICS_TOKEN
    if token:
        given = request.headers.get("Authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(address in network for network in INTERNAL_NETWORKS)


@never_cache
def metrics(request: HttpRequest) -> HttpResponse:
    if not _allowed(request):
        return HttpResponse(
            "Forbidden: metrics need the token or an internal address.\n",
            status=403,
            content_type="text/plain",
        )
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)
