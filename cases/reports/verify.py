"""Verification of an uploaded PDF: is it an intact report signed by this platform, and the one we stored?

Anyone may ask (the verify page and the API call ``verify_report_pdf``). Details of a stored report are
only given back when the uploaded bytes are exactly that report (same sha256): the uploader already holds it.
Never raises for bad input: every failure is a ``VerificationResult`` with a reason.
"""

import datetime as dt
import hashlib
import io
import logging
import re
from dataclasses import asdict, dataclass, field

from django.conf import settings
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko.sign.validation.status import SignatureCoverageLevel
from pyhanko_certvalidator import ValidationContext

from cases.models import Report
from cases.reports import signing

logger = logging.getLogger(__name__)

# Status codes, stable for the API.
VALID = "valid"
EMPTY = "empty"
TOO_LARGE = "too_large"
NOT_PDF = "not_pdf"
UNREADABLE = "unreadable"
NO_SIGNATURE = "no_signature"
ALTERED = "altered"
UNTRUSTED = "untrusted"
NOT_REGISTERED = "not_registered"
# Problems with the upload itself rather than with a document (the pages answer them with a 4xx).
INPUT_PROBLEMS = frozenset({EMPTY, TOO_LARGE, NOT_PDF})

_UID_IN_TITLE = re.compile(r"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})")


@dataclass(frozen=True)
class VerificationResult:
    """The answer for one uploaded file. ``valid`` is True only for an intact, trusted, stored report."""

    status: str
    message: str
    valid: bool = False
    sha256: str = ""
    size_bytes: int = 0
    intact: bool | None = None
    trusted: bool | None = None
    signer_name: str = ""
    certificate_subject: str = ""
    signed_at: dt.datetime | None = None
    reason: str = ""
    matches_stored: bool = False
    report_uid: str | None = None
    case_id: int | None = None
    is_addendum: bool = False
    supersedes_uid: str | None = None
    superseded_by_uid: str | None = None
    details: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        """JSON-ready (the API serialises this)."""
        data = asdict(self)
        data["signed_at"] = self.signed_at.isoformat() if self.signed_at else None
        return data


def max_upload_bytes() -> int:
    return int(getattr(settings, "TELEDER_REPORT_VERIFY_MAX_BYTES", 20 * 1024 * 1024))


def read_upload(upload) -> bytes | VerificationResult:
    """Read at most the size limit from an uploaded file; a result instead of bytes if it is too large."""
    limit = max_upload_bytes()
    if hasattr(upload, "seek"):
        upload.seek(0)
    data = upload.read(limit + 1)
    if len(data) > limit:
        return _too_large()
    return data


def _too_large() -> VerificationResult:
    return VerificationResult(
        status=TOO_LARGE,
        message=f"The file is larger than {max_upload_bytes() // (1024 * 1024)} MB; reports are much smaller.",
    )


def _claimed_uid(reader: PdfFileReader) -> str | None:
    try:
        title = str(reader.trailer["/Info"]["/Title"])
    except Exception:  # noqa: BLE001 - any missing or odd /Info means no claim
        return None
    match = _UID_IN_TITLE.search(title)
    return match.group(1) if match else None


def _stored_fields(report: Report) -> dict:
    addendum = Report.objects.filter(supersedes=report).only("uid").first()
    return {
        "report_uid": str(report.uid),
        "case_id": report.case_id,
        "is_addendum": report.is_addendum,
        "supersedes_uid": str(report.supersedes.uid) if report.supersedes_id else None,
        "superseded_by_uid": str(addendum.uid) if addendum else None,
    }


def _subject(cert) -> tuple[str, str]:
    try:
        common_name = cert.subject.native.get("common_name", "")
        return (
            common_name if isinstance(common_name, str) else ", ".join(common_name)
        ), cert.subject.human_friendly
    except Exception:  # noqa: BLE001
        return "", ""


@dataclass(frozen=True)
class SignatureCheck:
    """What the PDF itself says, before looking at stored reports (no database needed)."""

    status: str
    message: str
    intact: bool | None = None
    trusted: bool | None = None
    signature: dict = field(default_factory=dict)
    claimed_uid: str | None = None


def check_signature(data: bytes, *, at: dt.datetime | None = None) -> SignatureCheck:
    """Parse ``data`` as a PDF and validate its signature against the trust roots, with the certificates
    checked at time ``at`` (default: now). Raises nothing."""
    try:
        return _check_signature(data, at)
    except Exception as exc:  # noqa: BLE001 - a hostile or broken file must give an answer, never a 500
        logger.info("an uploaded PDF could not be read (%s: %.200s)", type(exc).__name__, exc)
        return SignatureCheck(
            status=UNREADABLE,
            message="The PDF is damaged or was altered: it cannot be read, so it is not a valid report.",
        )


def _check_signature(data: bytes, at: dt.datetime | None) -> SignatureCheck:
    reader = PdfFileReader(io.BytesIO(data), strict=False)
    signatures = reader.embedded_signatures
    if not signatures:
        return SignatureCheck(
            status=NO_SIGNATURE,
            message="This PDF carries no digital signature, so it is not a signed TeleDerm report.",
        )
    embedded = signatures[-1]
    try:
        context = ValidationContext(trust_roots=signing.trust_roots(), allow_fetching=False, moment=at)
        status = validate_pdf_signature(embedded, context)
    except Exception as exc:  # noqa: BLE001 - a damaged signature container
        logger.info(
            "the signature of an uploaded PDF could not be evaluated (%s: %.200s)", type(exc).__name__, exc
        )
        return SignatureCheck(
            status=ALTERED,
            message="The signature in this PDF is damaged or was altered; the document cannot be trusted.",
            intact=False,
        )
    signer_name, certificate_subject = _subject(status.signing_cert)
    reason = ""
    try:
        signer_name = str(embedded.sig_object.get("/Name") or "") or signer_name
        reason = str(embedded.sig_object.get("/Reason") or "")
    except Exception:  # noqa: BLE001 - optional entries of an odd signature dictionary
        logger.debug("no /Name or /Reason in the signature", exc_info=True)
    signature = {
        "signer_name": signer_name,
        "certificate_subject": certificate_subject,
        "signed_at": embedded.self_reported_timestamp,
        "reason": reason,
        "details": [status.summary()],
    }
    common = {"signature": signature, "claimed_uid": _claimed_uid(reader), "trusted": bool(status.trusted)}
    if not (status.intact and status.valid):
        return SignatureCheck(
            status=ALTERED,
            message="The document was altered after it was signed: its content does not match the signature.",
            intact=False,
            **common,
        )
    if status.coverage != SignatureCoverageLevel.ENTIRE_FILE or len(signatures) != 1:
        return SignatureCheck(
            status=ALTERED,
            message="The signed part is intact, but the file was changed after signing (content was added).",
            intact=False,
            **common,
        )
    if not status.trusted:
        return SignatureCheck(
            status=UNTRUSTED,
            message="The PDF is signed, but not by this platform: the signer (or their certificate) is unknown here.",
            intact=True,
            **common,
        )
    return SignatureCheck(status=VALID, message="", intact=True, **common)


def verify_report_pdf(data: bytes) -> VerificationResult:
    """Check ``data`` (an uploaded file's bytes) against this platform's CA and its stored reports."""
    if not data:
        return VerificationResult(status=EMPTY, message="The file is empty. Choose the report PDF to check.")
    if len(data) > max_upload_bytes():
        return _too_large()
    base = {"sha256": hashlib.sha256(data).hexdigest(), "size_bytes": len(data)}
    if b"%PDF-" not in data[:1024]:
        return VerificationResult(
            status=NOT_PDF, message="This file is not a PDF. Upload the report as it was downloaded.", **base
        )
    stored = Report.objects.select_related("supersedes").filter(sha256=base["sha256"]).first()
    # A file we stored is checked as of when we signed it (our record dates it), so that a report stays
    # valid after its signer's certificate expires; any other file is checked as of now.
    check = check_signature(data, at=stored.signed_at if stored else None)
    found = {"intact": check.intact, "trusted": check.trusted, **base, **check.signature}
    if check.status != VALID:
        return VerificationResult(status=check.status, message=check.message, **found)
    if stored is None:
        if check.claimed_uid and Report.objects.filter(uid=check.claimed_uid).exists():
            found["intact"] = False
            return VerificationResult(
                status=ALTERED,
                message="The signature checks out, but the file differs from the stored report: it was changed.",
                **found,
            )
        return VerificationResult(
            status=NOT_REGISTERED,
            message="The PDF is signed with this platform's certificate but is not one of its stored reports.",
            **found,
        )
    stored_fields = _stored_fields(stored)
    message = "Valid: this is an intact report signed by this platform and identical to the stored copy."
    if stored_fields["superseded_by_uid"]:
        message += " Note: it was later corrected by an addendum report."
    return VerificationResult(
        status=VALID, message=message, valid=True, matches_stored=True, **found, **stored_fields
    )
