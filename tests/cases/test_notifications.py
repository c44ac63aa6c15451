"""E-mail notifications through Django's e-mail backend (locmem here): who gets what, opt-out, no patient
data, retries that never block the workflow, the waiting-case alert and the administrators' outbox."""

import datetime as dt

import pytest
from django.core import mail
from django.core.mail.backends.base import BaseEmailBackend
from django.urls import reverse
from django.utils import timezone

from cases import notifications, services
from cases.models import Case, Notification, NotificationStatus
from cases.tasks import send_notification, sweep_workflow
from inference.models import ModelStatus, ModelVersion
from tests.support.factories import UserFactory

pytestmark = pytest.mark.django_db


class FailingBackend(BaseEmailBackend):
    def send_messages(self, messages):
        raise ConnectionRefusedError("SMTP server down")


@pytest.fixture(autouse=True)
def _locmem(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"


@pytest.fixture
def analysed(make_case, db):
    version = ModelVersion.objects.create(
        name="notify-ensemble",
        version="1.0.0",
        status=ModelStatus.ACTIVE,
        sha256="3" * 64,
        package_path="/nonexistent",
        manifest={"risk_bands": {"medium": 0.3, "high": 0.7}},
        threshold=0.5,
    )

    def make(probability=0.4, **kwargs):
        case = make_case(1, **kwargs)
        services.case_claim_for_analysis(case_id=case.pk)
        results = [
            services.ImageResult(
                image_id=i.pk, probability=probability, member_probabilities={}, latency_ms=1
            )
            for i in case.images.all()
        ]
        return services.case_record_analysis(case_id=case.pk, model_version=version, results=results)

    return make


def deliver(django_capture_on_commit_callbacks, action, monkeypatch):
    """Run ``action``; the notification tasks it queues on commit run here, in this process."""
    sent = []
    monkeypatch.setattr(notifications, "enqueue_notification", lambda pk: sent.append(pk) or True)
    with django_capture_on_commit_callbacks(execute=True):
        result = action()
    for pk in sent:
        send_notification.apply(args=[pk])
    return result


def test_images_requested_mails_the_clinician_without_patient_data(
    analysed, clinician, dermatologist, django_capture_on_commit_callbacks, monkeypatch
):
    case = analysed(clinical_notes="Bleeding lesion on the scalp.")
    deliver(
        django_capture_on_commit_callbacks,
        lambda: services.case_request_images(actor=dermatologist, case=case, reason="blurred"),
        monkeypatch,
    )
    (message,) = mail.outbox
    assert message.to == [clinician.email]
    assert f"case {case.pk} needs better images" in message.subject
    text = message.subject + message.body
    assert f"/cases/{case.pk}/" in message.body
    for private in (case.lesion.patient.reference, "Bleeding", "scalp"):
        assert private not in text
    assert Notification.objects.get().status == NotificationStatus.SENT


def test_report_issued_notifies_the_referring_clinician(analysed, clinician, dermatologist):
    from cases.models import Report

    case = analysed()
    review = services.review_submit(
        actor=dermatologist, case=case, diagnosis="mel", malignant=None, management="biopsy"
    )
    report = Report(case=case, review=review, sha256="f" * 64, signer=dermatologist, signed_at=timezone.now())
    created = notifications.notify_report_issued(report)
    send_notification.apply(args=[created[0].pk])
    (message,) = mail.outbox
    assert "report issued" in message.subject and "Melanoma" not in message.body


def test_opted_out_users_get_no_mail_but_the_outbox_says_so(
    analysed, clinician, dermatologist, django_capture_on_commit_callbacks, monkeypatch
):
    services.user_set_notifications(actor=clinician, enabled=False)
    case = analysed()
    deliver(
        django_capture_on_commit_callbacks,
        lambda: services.case_request_images(actor=dermatologist, case=case, reason="need_overview"),
        monkeypatch,
    )
    assert mail.outbox == []
    assert Notification.objects.get().status == NotificationStatus.SKIPPED


def test_sending_failures_are_retried_recorded_and_never_block_the_workflow(
    analysed, dermatologist, settings, django_capture_on_commit_callbacks, monkeypatch
):
    settings.EMAIL_BACKEND = "tests.cases.test_notifications.FailingBackend"
    case = analysed()
    with django_capture_on_commit_callbacks(execute=False):
        services.case_request_images(actor=dermatologist, case=case, reason="blurred")
    pk = Notification.objects.get().pk
    # Each attempt the worker makes (the task retries with backoff; the waits are skipped here).
    for _attempt in range(notifications.MAX_ATTEMPTS - 1):
        with pytest.raises(ConnectionRefusedError):
            notifications.notification_send(notification_id=pk)
        assert Notification.objects.get().status == NotificationStatus.PENDING
    # The task's last allowed attempt records the failure for good instead of raising.
    assert send_notification.apply(args=[pk], retries=notifications.MAX_ATTEMPTS - 1).get() == "failed"
    case.refresh_from_db()
    assert case.status == "needs_images"  # the clinical action happened regardless
    notification = Notification.objects.get()
    assert notification.status == NotificationStatus.FAILED
    assert notification.attempts == notifications.MAX_ATTEMPTS
    assert "SMTP server down" in notification.last_error


def test_urgent_case_waiting_past_the_target_alerts_the_organizations_dermatologists(
    analysed, dermatologist, org, other_org
):
    elsewhere = UserFactory(role="dermatologist", organizations=[other_org])
    urgent = analysed(0.1, priority="urgent", submission_key="u")
    routine_low = analysed(0.1, submission_key="r")
    two_days_ago = timezone.now() - dt.timedelta(hours=48)
    Case.objects.filter(pk__in=[urgent.pk, routine_low.pk]).update(submitted_at=two_days_ago)
    sweep_workflow.apply()
    sweep_workflow.apply()  # once per case and dermatologist
    alerts = Notification.objects.filter(kind=notifications.CASE_WAITING)
    assert [(n.recipient_id, n.case_id) for n in alerts] == [(dermatologist.pk, urgent.pk)]
    assert not Notification.objects.filter(recipient=elsewhere).exists()


def test_the_outbox_page_is_for_administrators(client, analysed, dermatologist, platform_admin, clinician):
    case = analysed()
    services.case_request_images(actor=dermatologist, case=case, reason="blurred")
    client.force_login(clinician)
    assert client.get(reverse("notification_outbox")).status_code == 403
    client.force_login(platform_admin)
    page = client.get(reverse("notification_outbox"), {"status": "pending"}).content.decode()
    assert "images_requested" in page and f"Case {case.pk}" in page


def test_users_turn_notifications_off_on_the_home_page(client, clinician):
    client.force_login(clinician)
    assert 'name="email_notifications" checked' in client.get(reverse("home")).content.decode()
    client.post(reverse("notification_preferences"), {"next": "/"})
    clinician.refresh_from_db()
    assert clinician.email_notifications is False
