"""/metrics: Prometheus text with the platform's gauges, only for internal addresses or the token."""

import pytest


def _scrape(client, **extra):
    return client.get("/metrics", **extra)


def test_internal_scrape_reports_cases_queues_and_latency(client, make_case, record_analysis):
    case = make_case()
    record_analysis(case, [0.4])
    make_case()
    response = _scrape(client, REMOTE_ADDR="10.1.2.3")
    assert response.status_code == 200
    text = response.content.decode()
    assert 'teleder_cases{status="awaiting_review"} 1.0' in text
    assert 'teleder_cases{status="submitted"} 1.0' in text
    assert "teleder_broker_up 1.0" in text
    assert 'teleder_queue_length{queue="inference"}' in text
    assert 'teleder_analysis_seconds_bucket{le="+Inf"} 1.0' in text
    assert "teleder_report_generation_failures 0.0" in text
    assert "# TYPE teleder_gate_rejections gauge" in text
    assert "django_http_requests_total_by_method_total" in text  # django-prometheus's own request metrics


def test_public_addresses_are_refused(client, db):
    assert _scrape(client, REMOTE_ADDR="203.0.113.9").status_code == 403


@pytest.mark.parametrize(
    ("header", "status"), [("", 403), ("Bearer wrong", 403), ("Bearer s3cret-scrape", 200)]
)
def test_with_a_token_only_the_token_counts(client, db, settings, header, status):
    settings.TELEDER_METRICS_TOKEN = "s3cret-scrape"
    extra = {"HTTP_AUTHORIZATION": header} if header else {}
    assert _scrape(client, REMOTE_ADDR="127.0.0.1", **extra).status_code == status
