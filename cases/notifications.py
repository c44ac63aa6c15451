"""E-mail notifications: an outbox row per recipient, sent by a Celery task after the commit.

A message carries no patient-identifying data (no reference, no diagnosis, no notes): only what happened to
which case number, and a link that requires a login. Users who opted out get a ``skipped`` row (the outbox
shows it). Sending failures are retried by the task and never block or roll back the clinical workflow.
"""

import logging
from collections.abc import Iterable
from datetime import timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from cases.models import (
    Case,
    CaseStatus,
    ImageRequest,
    Notification,
    NotificationStatus,
    Report,
    User,
)
from cases.vocabulary import Priority, RiskBand, Role

logger = logging.getLogger(__name__)

REPORT_ISSUED = "report_issued"
REPORT_CORRECTED = "report_corrected"
IMAGES_REQUESTED = "images_requested"
CASE_WAITING = "case_waiting"
MAX_ATTEMPTS = 5


def _link(name: str, case_id: int) -> str:
    return f"{settings.SITE_URL}{reverse(name, kwargs={'case_id': case_id})}"


def enqueue_notification(notification_id: int) -> bool:
    """Publish the send task; a broker outage is logged (the sweeper publishes pending rows again)."""
    from teleder.celery import app

    try:
        app.send_task("cases.tasks.send_notification", args=[notification_id], queue="default")
    except Exception:  # noqa: BLE001 - a notification must never fail the clinical action
        logger.warning("could not enqueue notification %s; the sweeper will retry", notification_id)
        return False
    return True


def notify(
    *, recipients: Iterable[User], kind: str, case: Case | None, subject: str, body: str, dedupe_key: str = ""
) -> list[Notification]:
    """Queue one e-mail per recipient (sent on commit); opted-out users and users without an address get a
    ``skipped`` row. ``dedupe_key`` makes a repeated call for the same event add nothing."""
    created = []
    for user in recipients:
        skip = not user.email_notifications or not user.email or not user.is_active
        try:
            with transaction.atomic():
                notification = Notification.objects.create(
                    recipient=user,
                    kind=kind,
                    case=case,
                    subject=subject,
                    body=body,
                    dedupe_key=dedupe_key,
                    status=NotificationStatus.SKIPPED if skip else NotificationStatus.PENDING,
                    last_error="opted out"
                    if not user.email_notifications
                    else ("no address" if skip else ""),
                )
        except IntegrityError:  # this event was already notified to this user
            continue
        created.append(notification)
        if not skip:
            transaction.on_commit(lambda pk=notification.pk: enqueue_notification(pk))
    return created


def _footer() -> str:
    return (
        "\n\nThis message contains no patient data; log in to see the case.\n"
        "You can turn these e-mails off on your account page."
    )


def notify_report_issued(report: Report) -> list[Notification]:
    """The referring clinician learns that the report (or an addendum) of their case is ready."""
    case = report.case
    kind = REPORT_CORRECTED if report.is_addendum else REPORT_ISSUED
    what = "A corrected report (addendum)" if report.is_addendum else "The signed report"
    return notify(
        recipients=[case.submitted_by],
        kind=kind,
        case=case,
        subject=f"TeleDerm: case {case.pk} {'report corrected' if report.is_addendum else 'report issued'}",
        body=f"{what} for case {case.pk} is ready.\n\nOpen the case: {_link('case_detail', case.pk)}{_footer()}",
        dedupe_key=f"report:{report.pk}",
    )


def notify_images_requested(request: ImageRequest) -> list[Notification]:
    """The clinician learns that the dermatologist needs better images (the reason, never the findings)."""
    case = request.case
    return notify(
        recipients=[case.submitted_by],
        kind=IMAGES_REQUESTED,
        case=case,
        subject=f"TeleDerm: case {case.pk} needs better images",
        body=f"The dermatologist asked for better images for case {case.pk}: {request.get_reason_display()}."
        f"\n\nAdd the images and resubmit: {_link('case_detail', case.pk)}{_footer()}",
        dedupe_key=f"image-request:{request.pk}",
    )


def notify_waiting_cases(*, now=None) -> list[Notification]:
    """Dermatologists of an organization hear about urgent or high-risk (or not assessed) cases that wait for a
    review longer than the organization's target. Once per case and dermatologist."""
    now = now or timezone.now()
    sent = []
    waiting = (
        Case.objects.filter(status=CaseStatus.AWAITING_REVIEW)
        .filter(Q(priority=Priority.URGENT) | Q(risk_band=RiskBand.HIGH) | Q(risk__isnull=True))
        .exclude(notifications__kind=CASE_WAITING)  # alerted already: once per case
        .select_related("organization")
        .distinct()
    )
    for case in waiting:
        since = case.submitted_at or case.created_at
        target = timedelta(hours=case.organization.review_target_hours)
        if now - since < target:
            continue
        dermatologists = User.objects.filter(role=Role.DERMATOLOGIST, organizations=case.organization)
        why = "urgent" if case.priority == Priority.URGENT else "high-risk"
        sent += notify(
            recipients=dermatologists,
            kind=CASE_WAITING,
            case=case,
            subject=f"TeleDerm: {why} case {case.pk} waiting for review",
            body=f"Case {case.pk} ({why}) has waited longer than the "
            f"{case.organization.review_target_hours} h review target of {case.organization.name}."
            f"\n\nReview it: {_link('review_case', case.pk)}{_footer()}",
            dedupe_key=f"waiting:{case.pk}",
        )
    return sent


def notification_send(*, notification_id: int) -> str:
    """Send one pending notification. Raises on a sending failure (the task retries) after recording it."""
    notification = Notification.objects.select_related("recipient").filter(pk=notification_id).first()
    if notification is None or notification.status != NotificationStatus.PENDING:
        return "skipped"
    # Claim it: two deliveries of the same message must not send two e-mails.
    claimed = Notification.objects.filter(
        pk=notification.pk, status=NotificationStatus.PENDING, attempts=notification.attempts
    ).update(attempts=notification.attempts + 1)
    if not claimed:
        return "skipped"
    try:
        send_mail(
            notification.subject,
            notification.body,
            settings.DEFAULT_FROM_EMAIL,
            [notification.recipient.email],
            fail_silently=False,
        )
    except Exception as exc:
        final = notification.attempts + 1 >= MAX_ATTEMPTS
        Notification.objects.filter(pk=notification.pk).update(
            last_error=f"{type(exc).__name__}: {exc}"[:2000],
            status=NotificationStatus.FAILED if final else NotificationStatus.PENDING,
        )
        raise
    Notification.objects.filter(pk=notification.pk).update(
        status=NotificationStatus.SENT, sent_at=timezone.now(), last_error=""
    )
    return "sent"


def notifications_resend_pending(*, older_than_s: int = 300) -> list[int]:
    """Publish pending notifications whose message may have been lost (called by the sweeper)."""
    cutoff = timezone.now() - timedelta(seconds=older_than_s)
    pending = list(
        Notification.objects.filter(
            status=NotificationStatus.PENDING, created_at__lt=cutoff, attempts__lt=MAX_ATTEMPTS
        ).values_list("pk", flat=True)[:200]
    )
    return [pk for pk in pending if enqueue_notification(pk)]
