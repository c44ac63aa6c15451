"""Server-rendered pages. Views are thin: objects come from ``cases.selectors`` (which decides who may see
what), writes go through ``cases.services``."""

from cases.views.clinic import (
    case_create,
    case_detail,
    case_heatmap,
    case_image,
    case_list,
    case_status,
    home,
    patient_detail,
    patient_list,
)
from cases.views.manage import audit_trail, case_retry, failed_cases
from cases.views.review import review_case, review_correct, review_queue, review_request_images
from cases.views.workflow import (
    case_add_images,
    case_submit,
    notification_outbox,
    notification_preferences,
    patient_search,
)

__all__ = [
    "audit_trail",
    "case_add_images",
    "case_heatmap",
    "case_submit",
    "notification_outbox",
    "notification_preferences",
    "patient_search",
    "review_correct",
    "review_request_images",
    "case_create",
    "case_detail",
    "case_image",
    "case_list",
    "case_retry",
    "case_status",
    "failed_cases",
    "home",
    "patient_detail",
    "patient_list",
    "review_case",
    "review_queue",
]
