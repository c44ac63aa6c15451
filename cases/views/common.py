"""Helpers shared by the page views: role checks, pagination, and how a case is shown."""

from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Page, Paginator
from django.http import HttpRequest, HttpResponse
from django.urls import NoReverseMatch, reverse

from cases.models import Case, CaseStatus, LesionImage, Prediction, Report, Review
from cases.permissions import has_role

PAGE_SIZE = 25


def role_required(*roles: str) -> Callable:
    """Logged in, and one of ``roles`` (platform admins pass ``Role.ADMIN``)."""

    def decorator(view: Callable) -> Callable:
        @wraps(view)
        @login_required
        def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            if not has_role(request.user, roles):
                raise PermissionDenied("Your role cannot open this page.")
            return view(request, *args, **kwargs)

        return wrapper

    return decorator


def paginate(request: HttpRequest, queryset, per_page: int = PAGE_SIZE) -> Page:
    return Paginator(queryset, per_page).get_page(request.GET.get("page"))


def report_download_url(report: Report) -> str | None:
    """The reports area owns the download view; a page must not break if it is not wired yet."""
    try:
        return reverse("report_download", kwargs={"uid": report.uid})
    except NoReverseMatch:
        return None


@dataclass(frozen=True)
class ImageRow:
    image: LesionImage
    url: str
    prediction: Prediction | None


def image_rows(case: Case) -> list[ImageRow]:
    """Each image with the prediction of the case's model version (the newest one if that is missing).

    Expects ``case`` from ``selectors.case_detail`` (images and predictions prefetched)."""
    rows = []
    for image in case.images.all():
        predictions = list(image.predictions.all())
        chosen = next((p for p in predictions if p.model_version_id == case.model_version_id), None)
        rows.append(
            ImageRow(
                image=image,
                url=reverse("case_image", kwargs={"case_id": case.pk, "image_id": image.pk}),
                prediction=chosen or (predictions[0] if predictions else None),
            )
        )
    return rows


def live_reviews(case: Case) -> tuple[Review | None, list[Review]]:
    """(the current review, the earlier superseded ones), from prefetched reviews."""
    reviews = list(case.reviews.all())
    superseded = {r.supersedes_id for r in reviews if r.supersedes_id}
    current = [r for r in reviews if r.pk not in superseded]
    latest = current[-1] if current else None
    return latest, [r for r in reviews if r is not latest]


def case_context(case: Case) -> dict:
    review, earlier_reviews = live_reviews(case)
    reports = [(report, report_download_url(report)) for report in case.reports.all()]
    return {
        "case": case,
        "images": image_rows(case),
        "review": review,
        "earlier_reviews": earlier_reviews,
        "reports": reports,
        "waiting_for_report": case.status == CaseStatus.REVIEWED,
        # Nothing changes by itself: reported, failed, or waiting for the clinician (draft, needs images).
        "final": case.status
        in (CaseStatus.REPORTED, CaseStatus.FAILED, CaseStatus.DRAFT, CaseStatus.NEEDS_IMAGES),
    }


def case_workflow_context(user, case: Case) -> dict:
    """Drafts and requests for better images: what the clinician may do, and the rounds so far.

    Expects ``case`` from ``selectors.case_detail`` (images and image requests prefetched)."""
    requests = list(case.image_requests.all())
    rounds: dict[int, int] = {}
    for image in case.images.all():
        rounds[image.round] = rounds.get(image.round, 0) + 1
    return {
        "can_add_images": case.status in (CaseStatus.DRAFT, CaseStatus.NEEDS_IMAGES)
        and (case.submitted_by_id == user.pk or user.is_platform_admin),
        "open_request": next((r for r in reversed(requests) if r.resolved_at is None), None),
        "image_requests": requests,
        "round_counts": rounds,
    }


def case_payload(context: dict) -> dict:
    """The JSON the live case page polls: status, per-image risk, review and report."""
    case: Case = context["case"]
    review: Review | None = context["review"]
    return {
        "id": case.pk,
        "status": case.status,
        "status_label": case.get_status_display(),
        "risk": case.risk,
        "risk_band": case.risk_band or None,
        "ai_assessment": case.ai_assessment or None,
        "model_version": str(case.model_version) if case.model_version_id else None,
        "failure_reason": case.failure_reason or None,
        "report_error": case.report_error or None,
        "final": context["final"],
        "images": [
            {
                "id": row.image.pk,
                "position": row.image.position,
                "url": row.url,
                "probability": row.prediction.probability if row.prediction else None,
                "risk_band": (row.prediction.risk_band or None) if row.prediction else None,
                "assessment": None
                if row.prediction is None
                else {
                    "status": row.prediction.assessment,
                    "reasons": list(row.prediction.reasons or []),
                    "explanation": row.prediction.explanation,
                },
                "model_version": str(row.prediction.model_version) if row.prediction else None,
            }
            for row in context["images"]
        ],
        "review": None
        if review is None
        else {
            "diagnosis": review.diagnosis,
            "diagnosis_label": review.get_diagnosis_display(),
            "malignant": review.malignant,
            "management": review.management,
            "follow_up_months": review.follow_up_months,
            "ai_flagged": review.ai_flagged,
            "agrees_with_ai": review.agrees_with_ai,
            "justification": review.justification or None,
            "correction_reason": review.correction_reason or None,
            "reviewer": review.reviewer.display_name,
            "created_at": review.created_at.isoformat(),
        },
        "reports": [
            {
                "uid": str(report.uid),
                "download_url": url,
                "addendum": report.is_addendum,
                "signed_at": report.signed_at.isoformat(),
                "signer": report.signer_name,
            }
            for report, url in context["reports"]
        ],
    }
