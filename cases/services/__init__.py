"""Every write to clinical data: validated (``full_clean``), in a transaction, and recorded in the audit trail.

Views, API views, forms and Celery tasks call these functions and hold no business rules of their own.
Errors are ``django.core.exceptions.ValidationError`` with a message per field, or ``PermissionDenied``.

One module per entity; import from this package (``from cases import services``):

- ``accounts``: organizations and users
- ``patients``: patients and lesions
- ``cases``: new cases (intake), drafts and images, submitting for analysis, retry
- ``reviews``: dermatologists' reviews and corrections, requests for images, the case's side of the report
- ``queue``: publishing work to the workers by task name
- ``analysis``: the declared interface the inference worker uses (claim, record, fail)
- ``base``: the status machine and the audited save they share
"""

from cases.services.accounts import organization_create, user_create, user_set_notifications
from cases.services.analysis import (
    ImageResult,
    case_claim_for_analysis,
    case_fail,
    case_record_analysis,
)
from cases.services.base import TRANSITIONS, IllegalTransition, StorageUnavailable
from cases.services.cases import (
    IMAGE_STATUSES,
    NewLesion,
    NewPatient,
    Submission,
    case_add_images,
    case_intake,
    case_retry,
    case_submit,
    case_submit_for_analysis,
)
from cases.services.patients import lesion_create, patient_create, patient_organization
from cases.services.queue import enqueue_analysis, enqueue_report
from cases.services.reviews import (
    MIN_CORRECTION_REASON_CHARS,
    ReviewAlreadyExists,
    case_mark_reported,
    case_record_report_error,
    case_request_images,
    review_correct,
    review_submit,
)

__all__ = [
    "IMAGE_STATUSES",
    "MIN_CORRECTION_REASON_CHARS",
    "ReviewAlreadyExists",
    "StorageUnavailable",
    "TRANSITIONS",
    "IllegalTransition",
    "ImageResult",
    "NewLesion",
    "NewPatient",
    "Submission",
    "case_add_images",
    "case_claim_for_analysis",
    "case_fail",
    "case_intake",
    "case_mark_reported",
    "case_record_analysis",
    "case_record_report_error",
    "case_request_images",
    "case_retry",
    "case_submit",
    "case_submit_for_analysis",
    "enqueue_analysis",
    "enqueue_report",
    "lesion_create",
    "organization_create",
    "patient_create",
    "patient_organization",
    "review_correct",
    "review_submit",
    "user_create",
    "user_set_notifications",
]
