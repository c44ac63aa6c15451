"""Web forms. They collect and shape input only: every rule lives in ``cases.services`` and
``cases.uploads``; :func:`add_service_errors` puts a service's ``ValidationError`` back onto the fields so
that the page re-renders with everything the user typed."""

import base64
import io
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from PIL import Image

from cases.models import CaseStatus, ImageRequestReason, Lesion, Organization, Patient, User
from cases.uploads import clean_image
from cases.vocabulary import Diagnosis, Management, Priority, RiskBand, Sex, Site

ACCEPTED_IMAGE_TYPES = "image/jpeg,image/png"


def add_service_errors(
    form: forms.Form, error: ValidationError, *, field_map: dict[str, str] | None = None
) -> None:
    """Attach a service's ValidationError to the form: per field where the field exists, else non-field."""
    field_map = field_map or {}
    if not hasattr(error, "error_dict"):
        for message in error.messages:
            form.add_error(None, message)
        return
    for field, messages in error.message_dict.items():
        target = field_map.get(field, field)
        target = target if target in form.fields else None
        for message in messages:
            form.add_error(target, message)


class MultipleImageInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleImageField(forms.FileField):
    """Several files in one input; the type and content checks are ``cases.uploads.clean_image``'s."""

    widget = MultipleImageInput

    def clean(self, data, initial=None):
        if isinstance(data, list | tuple):
            return [super(MultipleImageField, self).clean(item, initial) for item in data if item]
        return [super().clean(data, initial)] if data else []


# Patients -----------------------------------------------------------------------------------------------


def _year_field(required: bool = False) -> forms.IntegerField:
    return forms.IntegerField(
        label="Year of birth",
        required=required,
        min_value=1880,
        max_value=2200,
        widget=forms.NumberInput(attrs={"inputmode": "numeric", "autocomplete": "off"}),
    )


def _add_organization_choice(form: forms.Form, organizations: Iterable[Organization]) -> None:
    """Someone who submits for several organizations says which one a new patient belongs to
    (``services.patient_organization`` asks for it); for one organization there is nothing to choose."""
    organizations = list(organizations)
    if len(organizations) > 1:
        form.fields["organization"] = forms.ModelChoiceField(
            queryset=Organization.objects.filter(pk__in=[o.pk for o in organizations]),
            required=False,
            label="Organization of a new patient",
        )


class PatientForm(forms.Form):
    reference = forms.CharField(
        label="Patient reference",
        max_length=64,
        help_text="Your organization's pseudonymous reference. Never a name.",
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )
    sex = forms.ChoiceField(choices=Sex.choices, initial=Sex.UNKNOWN)
    year_of_birth = _year_field()

    def __init__(self, *args, organizations: Iterable[Organization] = (), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        _add_organization_choice(self, organizations)


class PatientSearchForm(forms.Form):
    q = forms.CharField(label="Search by reference", required=False, max_length=64)


# Cases --------------------------------------------------------------------------------------------------


class CaseForm(forms.Form):
    """A new case: an existing or new patient, an existing or new lesion, notes and 1-10 images."""

    patient_query = forms.CharField(
        label="Patient",
        max_length=64,
        required=False,
        help_text="Type the patient's reference to search your organization; leave empty for a new patient.",
        widget=forms.TextInput(
            attrs={
                "autocomplete": "off",
                "list": "patient-options",
                "spellcheck": "false",
                "role": "combobox",
            }
        ),
    )
    # Set by the typeahead (or resolved from ``patient_query`` on the server when scripts are off).
    patient = forms.ModelChoiceField(
        queryset=Patient.objects.none(), required=False, widget=forms.HiddenInput
    )
    new_patient_reference = forms.CharField(
        label="New patient reference",
        max_length=64,
        required=False,
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )
    new_patient_sex = forms.ChoiceField(label="Sex", choices=Sex.choices, initial=Sex.UNKNOWN, required=False)
    new_patient_year_of_birth = _year_field()
    lesion = forms.ModelChoiceField(queryset=Lesion.objects.none(), required=False, empty_label="New lesion")
    site = forms.ChoiceField(
        label="Anatomical site", choices=Site.choices, initial=Site.UNKNOWN, required=False
    )
    lesion_label = forms.CharField(
        label="Lesion description",
        max_length=100,
        required=False,
        help_text="Where exactly, e.g. 'left shoulder, 2 cm below the clavicle'.",
    )
    clinical_notes = forms.CharField(
        label="Clinical notes", required=False, max_length=5000, widget=forms.Textarea(attrs={"rows": 4})
    )
    priority = forms.ChoiceField(choices=Priority.choices, initial=Priority.ROUTINE)
    images = MultipleImageField(
        label="Images",
        required=False,
        # capture: phones offer the back camera first (the gallery stays available on most).
        widget=MultipleImageInput(attrs={"accept": ACCEPTED_IMAGE_TYPES, "capture": "environment"}),
    )
    submission_key = forms.CharField(max_length=64, widget=forms.HiddenInput)

    def __init__(
        self, *args, patients=None, lesions=None, organizations: Iterable[Organization] = (), **kwargs
    ) -> None:
        super().__init__(*args, **kwargs)
        _add_organization_choice(self, organizations)
        self.fields["patient"].queryset = patients if patients is not None else Patient.objects.none()
        self.fields["lesion"].queryset = lesions if lesions is not None else Lesion.objects.none()
        self.fields["lesion"].label_from_instance = _lesion_label
        self.fields["images"].widget.attrs["data-max-bytes"] = settings.TELEDER_MAX_IMAGE_BYTES
        self.fields["images"].widget.attrs["data-max-files"] = settings.TELEDER_MAX_IMAGES_PER_CASE
        if not self.is_bound and not self.initial.get("submission_key"):
            self.initial["submission_key"] = uuid.uuid4().hex

    def clean(self) -> dict:
        data = super().clean()
        query = (data.get("patient_query") or "").strip()
        if data.get("patient") is None and query:
            data["patient"] = self.fields["patient"].queryset.filter(reference__iexact=query).first()
            if data["patient"] is None and not (data.get("new_patient_reference") or "").strip():
                self.add_error(
                    "patient_query",
                    f"No patient '{query}' in your organization. Pick one from the suggestions, or clear "
                    "this field and add a new patient below.",
                )
                return data
        patient, lesion = data.get("patient"), data.get("lesion")
        if patient is None and not (data.get("new_patient_reference") or "").strip():
            self.add_error("new_patient_reference", "Choose a patient or give a reference for a new one.")
        if lesion is not None and (patient is None or lesion.patient_id != patient.pk):
            self.add_error("lesion", "This lesion belongs to another patient.")
        return data


def _lesion_label(lesion: Lesion) -> str:
    label = f" - {lesion.label}" if lesion.label else ""
    return f"{lesion.patient.reference}: {lesion.get_site_display()}{label} (#{lesion.pk})"


@dataclass(frozen=True)
class StagedImage:
    token: str
    thumbnail: str  # a data: URI, so the page needs no extra permission-checked request


class StagedImages:
    """Images that passed ``clean_image`` on a submit that failed for another reason, kept (re-encoded)
    so that the user does not have to pick them again. Stored per user under a name derived from the
    content; deleted once used, and by ``cases.staging.staged_images_sweep`` after an hour."""

    _TOKEN = re.compile(r"^[0-9a-f]{32}\.(jpg|png)$")

    def __init__(self, user: User) -> None:
        self.prefix = f"staging/{user.pk}/"

    @classmethod
    def valid_token(cls, token: str) -> bool:
        return bool(cls._TOKEN.match(token or ""))

    def stage(self, uploads: Iterable) -> tuple[list[str], list[str]]:
        """Keep every upload that is a valid image; return (tokens, messages for the others)."""
        tokens, errors = [], []
        for index, upload in enumerate(uploads, start=1):
            try:
                image = clean_image(upload, name=f"Image {index}")
            except ValidationError as exc:
                errors.extend(exc.messages)
                continue
            # Named by content: the same picture chosen again on the next failed attempt adds no file.
            token = f"{image.sha256[:32]}.{image.extension}"
            if token not in tokens and not default_storage.exists(self.prefix + token):
                default_storage.save(self.prefix + token, ContentFile(image.content))
            if token not in tokens:
                tokens.append(token)
        return tokens, errors

    def open(self, tokens: Iterable[str]) -> list:
        files = []
        for token in tokens:
            if self.valid_token(token) and default_storage.exists(self.prefix + token):
                with default_storage.open(self.prefix + token, "rb") as handle:
                    files.append(ContentFile(handle.read(), name=token))
        return files

    def describe(self, tokens: Iterable[str]) -> list[StagedImage]:
        described = []
        for upload in self.open(tokens):
            with Image.open(upload) as image:
                image.thumbnail((160, 160))
                out = io.BytesIO()
                image.convert("RGB").save(out, format="JPEG", quality=80)
            described.append(
                StagedImage(
                    upload.name, "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode()
                )
            )
        return described

    def discard(self, tokens: Iterable[str]) -> None:
        for token in tokens:
            if self.valid_token(token):
                default_storage.delete(self.prefix + token)


# Reviews ------------------------------------------------------------------------------------------------


class ReviewForm(forms.Form):
    """A review. The rules (derived malignancy, no reassurance of a malignant lesion, months only with
    follow-up, justified unusual combinations, agreement with the AI) are ``cases.review_rules``'."""

    AI_CONFIRM, AI_OVERRIDE = "confirm", "override"

    ai_assessment = forms.ChoiceField(
        label="The AI's assessment",
        choices=[(AI_CONFIRM, "Confirm the AI"), (AI_OVERRIDE, "Override the AI")],
        widget=forms.RadioSelect,
        help_text="Must match your malignant call: confirming a flagged lesion means calling it malignant.",
    )
    diagnosis = forms.ChoiceField(choices=[("", "Choose a diagnosis")] + Diagnosis.choices)
    malignant = forms.TypedChoiceField(
        label="Malignant",
        choices=[("yes", "Yes"), ("no", "No")],
        coerce=lambda value: value == "yes",
        widget=forms.RadioSelect,
        help_text="Melanoma, basal cell carcinoma and actinic keratosis / intraepithelial carcinoma are malignant.",
    )
    management = forms.ChoiceField(choices=[("", "Choose management")] + Management.choices)
    follow_up_months = forms.IntegerField(
        label="Follow-up in (months)",
        required=False,
        min_value=1,
        max_value=60,
        help_text="Only with 'Follow-up'.",
        widget=forms.NumberInput(attrs={"inputmode": "numeric"}),
    )
    notes = forms.CharField(required=False, max_length=5000, widget=forms.Textarea(attrs={"rows": 4}))
    justification = forms.CharField(
        label="Justification (unusual combinations)",
        required=False,
        max_length=2000,
        help_text="Needed for a benign diagnosis called malignant, a malignant lesion only followed up, or an "
        "urgent referral of a benign lesion. Recorded and printed on the report.",
        widget=forms.Textarea(attrs={"rows": 2}),
    )

    def __init__(self, *args, ai_assessed: bool = True, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not ai_assessed:  # nothing to confirm or override
            del self.fields["ai_assessment"]

    def agrees_with_ai(self) -> bool | None:
        choice = self.cleaned_data.get("ai_assessment")
        return None if not choice else choice == self.AI_CONFIRM


class CorrectionForm(ReviewForm):
    reason = forms.CharField(
        label="Reason for the correction",
        max_length=2000,
        help_text="Printed in the addendum, e.g. 'Histology: basal cell carcinoma'.",
        widget=forms.Textarea(attrs={"rows": 2}),
    )

    field_order = ["reason"]


class ImageRequestForm(forms.Form):
    reason = forms.ChoiceField(
        label="What is needed", choices=[("", "Choose a reason")] + ImageRequestReason.choices
    )
    note = forms.CharField(
        label="Note to the clinician",
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Required for 'Other'.",
    )


# Queue and admin filters --------------------------------------------------------------------------------


class QueueFilterForm(forms.Form):
    organization = forms.TypedChoiceField(required=False, coerce=int, empty_value=None)
    band = forms.ChoiceField(required=False, choices=[("", "All bands")] + RiskBand.choices)
    priority = forms.ChoiceField(required=False, choices=[("", "All priorities")] + Priority.choices)
    status = forms.ChoiceField(
        required=False,
        choices=[("", "Awaiting review")]
        + [
            choice
            for choice in CaseStatus.choices
            if choice[0] not in (CaseStatus.AWAITING_REVIEW, CaseStatus.DRAFT)  # drafts are the clinician's
        ],
    )

    def __init__(self, *args, organizations=(), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["organization"].choices = [("", "All organizations")] + [
            (o.pk, o.name) for o in organizations
        ]


class AuditFilterForm(forms.Form):
    actor = forms.TypedChoiceField(label="User", required=False, coerce=int, empty_value=None)
    object_type = forms.CharField(label="Object type", required=False, max_length=64)
    object_id = forms.CharField(label="Object id", required=False, max_length=64)

    def __init__(self, *args, users=(), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["actor"].choices = [("", "Anyone")] + [(u.pk, str(u)) for u in users]
