"""Reads of the reports area that anyone may make (the verify page). Permission-checked reads of reports
are ``cases.selectors.report_get`` / ``reports_visible_to``."""

import datetime as dt
import uuid
from dataclasses import dataclass

from cases.models import Report


@dataclass(frozen=True)
class PublicReportStatus:
    """What the verification link printed on a report reveals: no patient data, only whether the report
    exists, who signed it and when, and whether a later addendum corrected it."""

    uid: str
    signer_name: str
    signed_at: dt.datetime
    is_addendum: bool
    superseded_by_uid: str | None
    superseded_at: dt.datetime | None


def report_public_status(uid: str | None) -> PublicReportStatus | None:
    """None for a malformed or unknown uid (report uids are random, so they cannot be enumerated)."""
    try:
        parsed = uuid.UUID(str(uid))
    except (TypeError, ValueError):
        return None
    report = Report.objects.filter(uid=parsed).select_related("supersedes").first()
    if report is None:
        return None
    addendum = Report.objects.filter(supersedes=report).only("uid", "signed_at").first()
    return PublicReportStatus(
        uid=str(report.uid),
        signer_name=report.signer_name,
        signed_at=report.signed_at,
        is_addendum=report.is_addendum,
        superseded_by_uid=str(addendum.uid) if addendum else None,
        superseded_at=addendum.signed_at if addendum else None,
    )
