"""The report task: success, retries with the error visible on the case, the sweeper that re-enqueues a
lost one, and a real worker after a review."""

import pytest
from django.utils import timezone

from cases import services
from cases.models import Case, CaseStatus, Report
from cases.reports import signing
from cases.reports.services import reports_sweep_missing
from cases.reports.tasks import MAX_RETRIES, generate_report, sweep_missing_reports
from tests.cases.reports.helpers import stored_bytes
from tests.support.workers import queued, wait_for


def test_task_stores_the_report_and_a_repeated_delivery_changes_nothing(review, signing_ca):
    uid = generate_report.apply(args=[review.pk]).get()
    report = Report.objects.get()
    assert uid == str(report.uid) and report.review_id == review.pk
    assert Case.objects.get(pk=review.case_id).status == CaseStatus.REPORTED
    assert generate_report.apply(args=[review.pk]).get() == uid
    assert Report.objects.count() == 1


def test_failures_retry_then_stay_visible_on_the_case(review, signing_ca, settings, monkeypatch):
    # Eager retries run at once, one after the other, instead of after the backoff.
    monkeypatch.setitem(generate_report.app.conf, "task_eager_propagates", False)
    settings.TELEDER_SIGNING_PASSPHRASE = "not the passphrase of the CA key"
    assert generate_report.apply(args=[review.pk]).get() is None
    case = Case.objects.get(pk=review.case_id)
    assert case.status == CaseStatus.REVIEWED and not Report.objects.exists()
    attempts = MAX_RETRIES + 1
    assert f"attempt {attempts} of {attempts}" in case.report_error
    assert (
        "TELEDER_SIGNING_PASSPHRASE" in case.report_error and "No more automatic retries" in case.report_error
    )

    # Once the cause is fixed, the next run stores the report and clears the error.
    settings.TELEDER_SIGNING_PASSPHRASE = ""
    generate_report.apply(args=[review.pk]).get()
    case.refresh_from_db()
    assert case.status == CaseStatus.REPORTED and case.report_error == ""


def test_the_sweeper_re_enqueues_a_report_that_was_never_made(analysed_case, dermatologist, queues):
    services.review_submit(
        actor=dermatologist, case=analysed_case, diagnosis="nv", malignant=False, management="reassure"
    )  # in a test transaction nothing is published on commit: as if the broker lost the message
    assert reports_sweep_missing() == []  # reviewed just now: not stuck yet
    Case.objects.filter(pk=analysed_case.pk).update(updated_at=timezone.now() - timezone.timedelta(hours=1))
    assert reports_sweep_missing() == [analysed_case.pk]
    assert queued("default") == 1
    assert sweep_missing_reports.apply().get() == {"reports_enqueued": [analysed_case.pk]}


@pytest.mark.django_db
def test_task_for_an_unknown_review_does_nothing():
    assert generate_report.apply(args=[987654]).get() is None


@pytest.mark.integration
def test_review_triggers_the_report_in_a_real_worker(celery_worker_process, analysed_case, dermatologist):
    signing.ca_init()
    services.review_submit(
        actor=dermatologist, case=analysed_case, diagnosis="bcc", malignant=True, management="biopsy"
    )
    # review_submit enqueues on commit; the worker process renders, signs and stores the report.
    report = wait_for(lambda: Report.objects.filter(case=analysed_case).first(), timeout_s=90)
    assert wait_for(lambda: Case.objects.get(pk=analysed_case.pk).status == CaseStatus.REPORTED, timeout_s=30)
    from cases.reports import verify

    assert verify.verify_report_pdf(stored_bytes(report)).valid, celery_worker_process.log()[-2000:]
