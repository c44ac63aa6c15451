"""OpenAPI examples of API v1 (request and response bodies shown in the schema and Swagger UI).

Kept apart from ``cases/api/views.py`` so that the views read as what they do. Values are illustrative.
"""

from drf_spectacular.utils import OpenApiExample

# Authentication

LOGIN = OpenApiExample("login", value={"username": "clinician", "password": "..."}, request_only=True)
TOKENS = OpenApiExample(
    "tokens",
    value={
        "access": "eyJhbGciOiJIUzI1NiIs...",
        "refresh": "eyJhbGciOiJIUzI1NiIs...",
        "access_expires_at": "2026-11-26T10:15:00Z",
        "refresh_expires_at": "2026-12-26T10:00:00Z",
        "user": {
            "id": 3,
            "username": "clinician",
            "display_name": "Casey Clinician",
            "email": "clinician@example.org",
            "role": "clinician",
            "organizations": [{"id": 1, "name": "Demo Skin Clinic", "slug": "demo-clinic"}],
            "can_submit_cases": True,
            "can_review_cases": False,
        },
    },
    response_only=True,
)
LOGOUT = OpenApiExample("one session", value={"refresh": "eyJhbGciOi..."}, request_only=True)

# Patients and lesions

PATIENT_CREATE = OpenApiExample(
    "patient", value={"reference": "P-0042", "sex": "female", "year_of_birth": 1971}, request_only=True
)
LESION_CREATE = OpenApiExample(
    "lesion", value={"patient": 12, "site": "torso", "label": "left scapula"}, request_only=True
)

# Cases

_CASE = {
    "id": 42,
    "organization": 1,
    "lesion": 7,
    "patient": 3,
    "patient_reference": "P-0042",
    "status": "awaiting_review",
    "priority": "routine",
    "risk": 0.81,
    "risk_band": "high",
    "ai_assessment": "assessed",
    "model_version": {"id": 2, "name": "teleder-efficientnet-lite", "version": "2026.11"},
    "image_count": 1,
    "report": {"id": None, "url": None, "state": "not_reviewed"},
    "created_at": "2026-11-26T09:12:03Z",
    "updated_at": "2026-11-26T09:12:09Z",
}
_QUALITY = {
    "blur": {"value": 41.2, "threshold": 4.5, "passed": True},
    "brightness": {"value": 171.0, "threshold": 60.0, "passed": True},
    "clipped": {"value": 0.0, "threshold": 0.45, "passed": True},
    "min_side": {"value": 768.0, "threshold": 96.0, "passed": True},
    "aspect": {"value": 1.33, "threshold": 3.0, "passed": True},
}
_ASSESSED = {
    "status": "assessed",
    "reasons": [],
    "explanation": "",
    "quality": _QUALITY,
    "ood_score": 0.71,
}
_NOT_ASSESSED = {
    "status": "not_assessed",
    "reasons": ["too_dark"],
    "explanation": "The image is too dark: most of the lesion is in shadow. Please take a new, sharp, well-lit "
    "dermoscopic image of the lesion and add it to the case.",
    "quality": {**_QUALITY, "brightness": {"value": 38.0, "threshold": 60.0, "passed": False}},
    "ood_score": 1.9,
}
_CASE_DETAIL = {
    **_CASE,
    "clinical_notes": "Grew in 3 months, itches.",
    "submitted_by": {"id": 3, "display_name": "Casey Clinician"},
    "age_at_submission": 55,
    "sex_at_submission": "female",
    "site_at_submission": "torso",
    "failure_reason": "",
    "analysed_at": "2026-11-26T09:12:09Z",
    "images": [
        {
            "id": 101,
            "position": 0,
            "width": 1024,
            "height": 768,
            "content_type": "image/jpeg",
            "size_bytes": 231004,
            "sha256": "9f2c...",
            "predictions": [
                {
                    "id": 301,
                    "model_version": {"id": 2, "name": "teleder-efficientnet-lite", "version": "2026.11"},
                    "probability": 0.81,
                    "risk_band": "high",
                    "assessment": _ASSESSED,
                    "member_probabilities": {"lite0": 0.77, "lite1": 0.84, "lite2": 0.82},
                    "class_probabilities": {},
                    "heatmap_url": "https://teleder.example/api/v1/cases/42/predictions/301/heatmap/",
                    "created_at": "2026-11-26T09:12:09Z",
                }
            ],
        }
    ],
    "reviews": [],
    "reports": [],
}
_NOT_ASSESSED_IMAGE = {
    **_CASE_DETAIL["images"][0],
    "id": 102,
    "position": 1,
    "predictions": [
        {
            **_CASE_DETAIL["images"][0]["predictions"][0],
            "probability": None,
            "risk_band": "",
            "id": 302,
            "assessment": _NOT_ASSESSED,
            "member_probabilities": {},
            "heatmap_url": None,
        }
    ],
}
CASE_DETAIL = [
    OpenApiExample("case awaiting review", value=_CASE_DETAIL, response_only=True),
    OpenApiExample(
        "partly assessed (one image too dark)",
        value={
            **_CASE_DETAIL,
            "ai_assessment": "partial",
            "image_count": 2,
            "images": [_CASE_DETAIL["images"][0], _NOT_ASSESSED_IMAGE],
        },
        response_only=True,
    ),
    OpenApiExample(
        "AI could not assess (no risk, still in the review queue)",
        value={
            **_CASE_DETAIL,
            "risk": None,
            "risk_band": "",
            "ai_assessment": "not_assessed",
            "images": [{**_NOT_ASSESSED_IMAGE, "id": 101, "position": 0}],
        },
        response_only=True,
    ),
]
CASE_LIST = [
    OpenApiExample(
        "one page",
        value={"count": 1, "next": None, "previous": None, "results": [_CASE]},
        response_only=True,
    )
]
CASE_SUBMITTED = OpenApiExample(
    "submitted",
    value={
        **_CASE_DETAIL,
        "status": "submitted",
        "risk": None,
        "risk_band": "",
        "model_version": None,
        "analysed_at": None,
        "images": [{**_CASE_DETAIL["images"][0], "predictions": []}],
    },
    response_only=True,
    status_codes=["201", "200"],
)
CASE_STATUS = OpenApiExample(
    "analysed",
    value={
        "id": 42,
        "status": "awaiting_review",
        "risk": 0.81,
        "risk_band": "high",
        "failure_reason": "",
        "done": False,
        "report": {"id": None, "url": None, "state": "not_reviewed"},
        "analysis_delayed": False,
        "updated_at": "2026-11-26T09:12:09Z",
    },
    response_only=True,
)
CASE_STATUS_REPORTED = OpenApiExample(
    "report available",
    value={
        "id": 42,
        "status": "reported",
        "risk": 0.81,
        "risk_band": "high",
        "failure_reason": "",
        "done": True,
        "report": {
            "id": "7d0c3c1e-1f0b-4a53-9d1e-2f5b8f7a6c21",
            "url": "https://teleder.example.org/api/v1/reports/7d0c3c1e-1f0b-4a53-9d1e-2f5b8f7a6c21/download/",
            "state": "available",
        },
        "analysis_delayed": False,
        "updated_at": "2026-11-26T10:02:41Z",
    },
    response_only=True,
)

# Reviews

REVIEW_FOLLOW_UP = OpenApiExample(
    "follow-up",
    value={"diagnosis": "nv", "malignant": False, "management": "follow_up", "follow_up_months": 6},
    request_only=True,
)
