"""Request shapes of API v1: the bodies and query parameters each endpoint accepts. They check shape only;
business rules live in ``cases.services``. ``cases.api.serializers`` re-exports them, so that views name every
shape through one module."""

from django.conf import settings
from rest_framework import serializers

from cases import refusals
from cases.models import CaseStatus, ImageRequestReason
from cases.vocabulary import Diagnosis, Management, Priority, RiskBand, Sex, Site

MAX_ID = 10**18 - 1  # ids fit a signed 64-bit integer on every database (and the URL converter)


class LoginSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=128, write_only=True, style={"input_type": "password"})


class RefreshSerializer(serializers.Serializer):
    refresh = serializers.CharField(
        max_length=2000, help_text="The refresh token from login or the last refresh."
    )


class LogoutSerializer(serializers.Serializer):
    refresh = serializers.CharField(
        max_length=2000, required=False, default="", help_text="The session (refresh token) to end."
    )
    all_devices = serializers.BooleanField(
        required=False, default=False, help_text="End every session of this user instead."
    )

    def validate(self, attrs: dict) -> dict:
        if not attrs["refresh"] and not attrs["all_devices"]:
            raise serializers.ValidationError({"refresh": ["Give the refresh token, or all_devices=true."]})
        return attrs


class PatientCreateSerializer(serializers.Serializer):
    organization = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_ID,
        help_text="Required only for users of several organizations.",
    )
    reference = serializers.CharField(
        max_length=64, help_text="Pseudonymous reference, unique in the organization (never a name)."
    )
    sex = serializers.ChoiceField(choices=Sex.choices, default=Sex.UNKNOWN)
    year_of_birth = serializers.IntegerField(
        required=False,
        allow_null=True,
        help_text="Optional. From 120 years before the current year (UTC) to the current year: a future year "
        'is refused ("The year of birth cannot be in the future.") and so is an age over 120 ("That gives an '
        'age over 120 years."), both as a 400 on `year_of_birth`.',
    )


class PatientFilterSerializer(serializers.Serializer):
    search = serializers.CharField(required=False, max_length=64, help_text="Part of the patient reference.")


class LesionCreateSerializer(serializers.Serializer):
    patient = serializers.IntegerField(min_value=1, max_value=MAX_ID)
    site = serializers.ChoiceField(choices=Site.choices, default=Site.UNKNOWN)
    label = serializers.CharField(max_length=100, required=False, default="", allow_blank=True)


class LesionFilterSerializer(serializers.Serializer):
    patient = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID)


class ImageRequestCreateSerializer(serializers.Serializer):
    reason = serializers.ChoiceField(choices=ImageRequestReason.choices)
    note = serializers.CharField(
        max_length=2000, required=False, default="", allow_blank=True, help_text="Required for `other`."
    )


class TurnaroundFilterSerializer(serializers.Serializer):
    days = serializers.IntegerField(required=False, default=7, min_value=1, max_value=366)


class CaseCreateSerializer(serializers.Serializer):
    lesion = serializers.IntegerField(
        min_value=1, max_value=MAX_ID, help_text="The lesion this case documents."
    )
    clinical_notes = serializers.CharField(max_length=5000, required=False, default="", allow_blank=True)
    priority = serializers.ChoiceField(choices=Priority.choices, default=Priority.ROUTINE)
    draft = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Create a draft: images optional, nothing analysed until `POST /cases/{id}/submit/`.",
    )
    images = serializers.ListField(
        child=serializers.FileField(allow_empty_file=True, use_url=False),
        required=False,
        default=list,
        max_length=settings.TELEDER_MAX_IMAGES_PER_CASE,
        error_messages={
            "max_length": refusals.TOO_MANY_IMAGES.format(limit=settings.TELEDER_MAX_IMAGES_PER_CASE),
        },
        help_text="1-10 JPEG or PNG files (repeat the `images` part); optional for a draft. Re-encoded on "
        "upload; EXIF is removed.",
    )

    def validate(self, attrs: dict) -> dict:
        if not attrs.get("draft") and not attrs.get("images"):
            raise serializers.ValidationError({"images": ["Add at least one image (or create a draft)."]})
        return attrs


class ImagesAddSerializer(serializers.Serializer):
    images = serializers.ListField(
        child=serializers.FileField(allow_empty_file=True, use_url=False),
        min_length=1,
        max_length=settings.TELEDER_MAX_IMAGES_PER_CASE,
        error_messages={
            "max_length": refusals.TOO_MANY_IMAGES.format(limit=settings.TELEDER_MAX_IMAGES_PER_CASE),
            "min_length": "Add at least one image.",
        },
        help_text="JPEG or PNG files; the case holds at most 10 in all. Only for drafts and cases returned "
        "for better images.",
    )


class CaseFilterSerializer(serializers.Serializer):
    ORDERINGS = ["created_at", "-created_at", "updated_at", "-updated_at", "risk", "-risk"]

    status = serializers.ChoiceField(choices=CaseStatus.choices, required=False)
    risk_band = serializers.ChoiceField(choices=RiskBand.choices, required=False)
    priority = serializers.ChoiceField(choices=Priority.choices, required=False)
    organization = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID)
    patient = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID)
    lesion = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID)
    created_after = serializers.DateTimeField(required=False, help_text="ISO 8601, inclusive.")
    created_before = serializers.DateTimeField(required=False, help_text="ISO 8601, exclusive.")
    ordering = serializers.ChoiceField(
        choices=ORDERINGS, required=False, default="-created_at", help_text="`-` for descending."
    )


QUEUE_STATUSES = [
    (CaseStatus.AWAITING_REVIEW.value, CaseStatus.AWAITING_REVIEW.label),
    (CaseStatus.ANALYSING.value, CaseStatus.ANALYSING.label),
    (CaseStatus.REVIEWED.value, CaseStatus.REVIEWED.label),
]


class QueueFilterSerializer(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=QUEUE_STATUSES,
        required=False,
        help_text="Default: awaiting_review.",
    )
    risk_band = serializers.ChoiceField(choices=RiskBand.choices, required=False)
    priority = serializers.ChoiceField(choices=Priority.choices, required=False)
    organization = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID)
    created_after = serializers.DateTimeField(required=False)
    created_before = serializers.DateTimeField(required=False)


class ReviewCreateSerializer(serializers.Serializer):
    diagnosis = serializers.ChoiceField(choices=Diagnosis.choices)
    malignant = serializers.BooleanField(
        required=False,
        allow_null=True,
        default=None,
        help_text="Derived from the diagnosis when left out (mel, bcc, akiec: malignant; nv, bkl, df, vasc: "
        "benign); required for `other`. A value that contradicts a malignant diagnosis is refused.",
    )
    management = serializers.ChoiceField(choices=Management.choices)
    follow_up_months = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        max_value=60,
        help_text="Required for follow_up, refused with any other management.",
    )
    notes = serializers.CharField(max_length=5000, required=False, default="", allow_blank=True)
    justification = serializers.CharField(
        max_length=2000,
        required=False,
        default="",
        allow_blank=True,
        help_text="Required for unusual combinations (a benign diagnosis called malignant, a malignant lesion "
        "only followed up, an urgent referral of a benign lesion); recorded and printed.",
    )
    agrees_with_ai = serializers.BooleanField(
        required=False,
        allow_null=True,
        default=None,
        help_text="Derived from the AI flag and `malignant`; leave it out. A value that contradicts it is "
        "refused (400).",
    )


class CorrectionCreateSerializer(ReviewCreateSerializer):
    reason = serializers.CharField(
        max_length=2000,
        help_text="Why the report is corrected (at least 10 characters); printed in the addendum.",
    )


class ReportVerifySerializer(serializers.Serializer):
    file = serializers.FileField(allow_empty_file=True, use_url=False, help_text="The report PDF to check.")
