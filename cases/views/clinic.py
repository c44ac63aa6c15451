"""Clinician pages: home, patients, the new-case form, case lists and the live case page."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.views.decorators.http import require_GET, require_http_methods

from cases import permissions, refusals, selectors, services
from cases.audit import AuditAction, audit_record
from cases.forms import CaseForm, PatientForm, PatientSearchForm, StagedImages, add_service_errors
from cases.models import CaseStatus
from cases.views.common import case_context, case_payload, case_workflow_context, paginate, role_required
from cases.vocabulary import Role

SUBMITTERS = permissions.SUBMITTERS


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """One start page per role."""
    user = request.user
    context: dict = {}
    if user.is_dermatologist:
        counts = selectors.review_queue_counts(user=user)
        context["queue_top"] = selectors.review_queue(user)[:5]
        context["queue_counts"] = counts.by_band
        context["queue_total"] = counts.total
        context["turnaround"] = selectors.turnaround_by_organization(user)
    elif user.is_platform_admin:  # the active model comes from the inference app's template tag
        context["failed_count"] = selectors.cases_visible_to(user).filter(status=CaseStatus.FAILED).count()
    else:
        counts = selectors.case_status_counts(user=user, submitted_by=user)
        context["recent_cases"] = selectors.cases_list(user=user, filters={"submitted_by": user.pk})[:8]
        context["status_counts"] = counts
        context["in_analysis"] = counts[CaseStatus.SUBMITTED] + counts[CaseStatus.ANALYSING]
        context["has_cases"] = any(counts.values())
    return render(request, "cases/home.html", context)


# Patients -----------------------------------------------------------------------------------------------


def _submit_organizations(user):
    return [org for org in permissions.organizations_for(user) if permissions.can_submit(user, org)]


@role_required(*SUBMITTERS)
@require_http_methods(["GET", "POST"])
def patient_list(request: HttpRequest) -> HttpResponse:
    """Search the organization's patients by reference, and add one."""
    search = PatientSearchForm(request.GET or None)
    query = search.cleaned_data["q"] if search.is_valid() else ""
    form = PatientForm(request.POST or None, organizations=_submit_organizations(request.user))
    if request.method == "POST" and form.is_valid():
        try:
            organization = services.patient_organization(
                actor=request.user, organization_id=_chosen_id(form.cleaned_data.get("organization"))
            )
            patient = services.patient_create(
                actor=request.user,
                organization=organization,
                reference=form.cleaned_data["reference"],
                sex=form.cleaned_data["sex"],
                year_of_birth=form.cleaned_data["year_of_birth"],
            )
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, f"Patient {patient.reference} added.")
            return redirect("patient_detail", patient_id=patient.pk)
    page = paginate(request, selectors.patients_search(request.user, query))
    status = 400 if request.method == "POST" else 200
    return render(
        request, "cases/patient_list.html", {"page": page, "search": search, "form": form}, status=status
    )


@role_required(*SUBMITTERS, Role.DERMATOLOGIST)
@require_GET
def patient_detail(request: HttpRequest, patient_id: int) -> HttpResponse:
    patient = selectors.patient_get(request.user, patient_id)
    lesions = permissions.lesions_visible_to(request.user).filter(patient=patient)
    cases = selectors.cases_visible_to(request.user).filter(lesion__patient=patient)
    return render(
        request, "cases/patient_detail.html", {"patient": patient, "lesions": lesions, "cases": cases}
    )


# Cases --------------------------------------------------------------------------------------------------

# Service error keys -> the form fields that hold what the user typed for them.
_CASE_FIELD_MAP = {
    "reference": "new_patient_reference",
    "sex": "new_patient_sex",
    "year_of_birth": "new_patient_year_of_birth",
    "label": "lesion_label",
}


@role_required(*SUBMITTERS)
@require_http_methods(["GET", "POST"])
def case_create(request: HttpRequest) -> HttpResponse:
    """The new-case form. A repeated submit (same hidden submission key) leads to the case already made; a
    failed submit keeps every field and every valid image."""
    user = request.user
    patients = permissions.patients_visible_to(user)
    lesions = permissions.lesions_visible_to(user)
    staging = StagedImages(user)
    kept = [token for token in request.POST.getlist("kept_images") if StagedImages.valid_token(token)]
    if request.method == "GET":
        initial = {}
        if request.GET.get("patient"):
            chosen = selectors.patient_get(user, request.GET["patient"])
            initial.update(patient=chosen.pk, patient_query=chosen.reference)
        form = CaseForm(
            initial=initial, patients=patients, lesions=lesions, organizations=_submit_organizations(user)
        )
        return render(request, "cases/case_form.html", _case_form_context(form, patients, []))

    key = (request.POST.get("submission_key") or "").strip()[:64]
    existing = _submitted_with_key(user, key)
    if existing is not None:
        messages.info(request, f"Case {existing.pk} was already submitted.")
        return redirect("case_detail", case_id=existing.pk)

    form = CaseForm(
        request.POST,
        request.FILES,
        patients=patients,
        lesions=lesions,
        organizations=_submit_organizations(user),
    )
    uploads = request.FILES.getlist("images")
    draft = bool(request.POST.get("save_draft"))
    kept_files = staging.open(kept)
    if len(kept_files) < len(kept):
        # Swept after an hour (or used by another tab): never submit fewer images than the page showed.
        kept = [upload.name for upload in kept_files]
        form.is_valid()
        form.add_error(
            "images", "Some images kept from your last attempt are no longer stored; add them again."
        )
    elif form.is_valid():
        try:
            images = kept_files + list(form.cleaned_data["images"])
            case = _submit(user, form.cleaned_data, images, draft=draft)
        except ValidationError as exc:
            # A concurrent double submit may have won while this one ran: lead to its case.
            existing = _submitted_with_key(user, key)
            if existing is not None:
                return redirect("case_detail", case_id=existing.pk)
            add_service_errors(form, exc, field_map=_CASE_FIELD_MAP)
        except PermissionDenied as exc:
            form.add_error(None, str(exc))
        except services.StorageUnavailable as exc:
            # Nothing was stored; the form keeps every field (the images must be chosen again).
            form.add_error(None, str(exc))
            try:
                kept_images = staging.describe(kept)
            except Exception:  # noqa: BLE001 - the store may refuse reads too
                kept_images = []
            context = _case_form_context(form, patients, kept_images)
            return render(request, "cases/case_form.html", context, status=503)
        else:
            staging.discard(kept)
            if draft:
                messages.success(request, f"Draft case {case.pk} saved. Add images, then submit it.")
            else:
                messages.success(request, f"Case {case.pk} submitted. The AI analysis starts now.")
            return redirect("case_detail", case_id=case.pk)

    new_tokens, image_errors = staging.stage(uploads)
    if "images" not in form.errors:
        for message in image_errors:
            form.add_error("images", message)
        if not uploads and not kept and not draft:
            form.add_error("images", "Add at least one image.")
    kept_images = staging.describe(list(dict.fromkeys(kept + new_tokens)))
    # An oversized upload is 413 here as in the API (cases/refusals.py holds both texts).
    too_large = any(refusals.is_too_large(str(m)) for m in form.errors.get("images", []))
    return render(
        request,
        "cases/case_form.html",
        _case_form_context(form, patients, kept_images),
        status=413 if too_large else 400,
    )


def _submitted_with_key(user, key: str):
    if not key:
        return None
    return selectors.cases_visible_to(user).filter(submitted_by=user, submission_key=key).first()


def _chosen_id(organization) -> int | None:
    return organization.pk if organization is not None else None


def _submit(user, data: dict, images: list, *, draft: bool = False):
    """The patient and lesion a new case needs, and the case: the intake service, all or nothing."""
    return services.case_intake(
        actor=user,
        images=images,
        patient=data["patient"],
        new_patient=services.NewPatient(
            reference=data["new_patient_reference"],
            sex=data["new_patient_sex"],
            year_of_birth=data["new_patient_year_of_birth"],
        ),
        organization_id=_chosen_id(data.get("organization")),
        lesion=data["lesion"],
        new_lesion=services.NewLesion(site=data["site"], label=data["lesion_label"]),
        clinical_notes=data["clinical_notes"],
        priority=data["priority"],
        submission_key=data["submission_key"],
        draft=draft,
    ).case


def _case_form_context(form: CaseForm, patients, kept_images: list) -> dict:
    from django.conf import settings

    return {
        "form": form,
        "patients": patients,
        "kept_images": kept_images,
        "max_image_mb": settings.TELEDER_MAX_IMAGE_BYTES // (1024 * 1024),
        "max_images": settings.TELEDER_MAX_IMAGES_PER_CASE,
    }


@login_required
@require_GET
def case_list(request: HttpRequest) -> HttpResponse:
    """The user's cases (a clinician's own; everything visible for others), newest first."""
    status = request.GET.get("status", "")
    filters = {"status": status} if status in CaseStatus.values else {}
    if request.user.is_clinician:
        filters["submitted_by"] = request.user.pk
    cases = selectors.cases_list(user=request.user, filters=filters)
    return render(
        request,
        "cases/case_list.html",
        {
            "page": paginate(request, cases),
            "status": status,
            "statuses": CaseStatus.choices,
            "query": f"status={status}" if status else "",
        },
    )


@login_required
@require_GET
def case_detail(request: HttpRequest, case_id: int) -> HttpResponse:
    case = selectors.case_detail(request.user, case_id)
    audit_record(actor=request.user, action=AuditAction.CASE_VIEW, obj=case)
    context = case_context(case)
    context["can_review"] = permissions.can_review(request.user, case)
    context.update(case_workflow_context(request.user, case))
    return render(request, "cases/case_detail.html", context)


@login_required
@require_GET
def case_status(request: HttpRequest, case_id: int) -> JsonResponse:
    """What the live case page polls: status, risk per image, review and reports, plus the rendered panel."""
    case = selectors.case_detail(request.user, case_id)
    context = case_context(case)
    payload = case_payload(context)
    payload["html"] = render_to_string("cases/_case_live.html", context, request=request)
    response = JsonResponse(payload)
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_GET
def case_image(request: HttpRequest, case_id: int, image_id: int) -> FileResponse:
    """One image of a visible case (never a public media URL); every read is audited."""
    case = selectors.case_get(request.user, case_id)
    image = case.images.filter(pk=image_id).first()
    if image is None:
        raise Http404("No such image.")
    audit_record(
        actor=request.user,
        action=AuditAction.IMAGE_VIEW,
        obj=image,
        organization=case.organization,
        case=case.pk,
    )
    response = FileResponse(image.file.open("rb"), content_type=image.content_type)
    response["Cache-Control"] = "private, max-age=3600"
    return response


@login_required
@require_GET
def case_heatmap(request: HttpRequest, case_id: int, prediction_id: int) -> FileResponse:
    """The heatmap overlay of one prediction of a visible case (org-scoped like the image); audited."""
    prediction = selectors.prediction_heatmap(request.user, case_id, prediction_id)
    return heatmap_response(request, prediction, via="web")


def heatmap_response(request: HttpRequest, prediction, *, via: str) -> FileResponse:
    """Audit the read and stream the PNG (shared by the page and the API view). A map is never overwritten,
    so it may be cached privately."""
    case = prediction.image.case
    audit_record(
        actor=request.user,
        action=AuditAction.HEATMAP_VIEW,
        obj=prediction.image,
        organization=case.organization,
        case=case.pk,
        prediction=prediction.pk,
        via=via,
    )
    response = FileResponse(prediction.heatmap.open("rb"), content_type="image/png")
    response["Cache-Control"] = "private, max-age=3600"
    return response
