"""Request and response shapes of API v1. Serializers check shape only; business rules live in
``cases.services`` and visibility in ``cases.selectors``."""

from django.conf import settings
from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from cases import refusals
from cases.models import (
    Case,
    CaseStatus,
    ImageRequest,
    ImageRequestReason,
    Lesion,
    LesionImage,
    Organization,
    Patient,
    Prediction,
    Report,
    Review,
)
from cases.vocabulary import (
    NOT_ASSESSED_REASONS,
    Assessment,
    CaseAssessment,
    Diagnosis,
    Management,
    Priority,
    RiskBand,
    Role,
    Sex,
    Site,
)
from inference.models import ModelStatus, ModelVersion

MAX_ID = 10**18 - 1  # ids fit a signed 64-bit integer on every database (and the URL converter)

# Errors ------------------------------------------------------------------------------------------------


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(
        help_text="Machine-readable error code, e.g. `invalid`, `not_found`, `throttled`."
    )
    message = serializers.CharField(help_text="A sentence a person can act on.")
    fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        help_text="Messages per request field; `non_field_errors` for the request as a whole. Empty if none.",
    )


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()


# Authentication and users --------------------------------------------------------------------------------


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


class LogoutResultSerializer(serializers.Serializer):
    revoked_sessions = serializers.IntegerField(min_value=0)


class OrganizationSerializer(serializers.ModelSerializer):
    class Meta:
        model = Organization
        fields = ["id", "name", "slug"]


class MeSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    display_name = serializers.CharField()
    email = serializers.EmailField(allow_blank=True)
    role = serializers.ChoiceField(choices=Role.choices)
    organizations = OrganizationSerializer(many=True)
    can_submit_cases = serializers.BooleanField(help_text="Clinicians and administrators submit cases.")
    can_review_cases = serializers.BooleanField(help_text="Dermatologists review cases.")


class TokenPairSerializer(serializers.Serializer):
    access = serializers.CharField(help_text="Send as `Authorization: Bearer <access>`.")
    refresh = serializers.CharField(help_text="Exchange at `/api/v1/auth/refresh/` before `access` expires.")
    access_expires_at = serializers.DateTimeField()
    refresh_expires_at = serializers.DateTimeField()
    user = MeSerializer()


class UserBriefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    display_name = serializers.CharField()


# Patients and lesions ------------------------------------------------------------------------------------


class PatientSerializer(serializers.ModelSerializer):
    organization = serializers.IntegerField(source="organization_id", read_only=True)

    class Meta:
        model = Patient
        fields = ["id", "organization", "reference", "sex", "year_of_birth", "created_at"]
        read_only_fields = fields


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


class LesionSerializer(serializers.ModelSerializer):
    patient = serializers.IntegerField(source="patient_id", read_only=True)

    class Meta:
        model = Lesion
        fields = ["id", "patient", "site", "label", "created_at"]
        read_only_fields = fields


class LesionCreateSerializer(serializers.Serializer):
    patient = serializers.IntegerField(min_value=1, max_value=MAX_ID)
    site = serializers.ChoiceField(choices=Site.choices, default=Site.UNKNOWN)
    label = serializers.CharField(max_length=100, required=False, default="", allow_blank=True)


class LesionFilterSerializer(serializers.Serializer):
    patient = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID)


# Model versions ------------------------------------------------------------------------------------------


class ModelVersionBriefSerializer(serializers.ModelSerializer):
    class Meta:
        model = ModelVersion
        fields = ["id", "name", "version"]
        read_only_fields = fields


class ModelVersionSerializer(serializers.ModelSerializer):
    status = serializers.ChoiceField(choices=ModelStatus.choices, read_only=True)
    class_names = serializers.SerializerMethodField()
    members = serializers.SerializerMethodField()
    risk_bands = serializers.SerializerMethodField()

    class Meta:
        model = ModelVersion
        fields = [
            "id",
            "name",
            "version",
            "task",
            "status",
            "threshold",
            "risk_bands",
            "class_names",
            "members",
            "metrics",
            "model_card",
            "created_at",
            "activated_at",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_class_names(self, obj: ModelVersion) -> list[str]:
        return [str(name) for name in obj.manifest.get("class_names") or []]

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_members(self, obj: ModelVersion) -> list[str]:
        return [str(m.get("name", "")) for m in obj.manifest.get("members") or [] if isinstance(m, dict)]

    @extend_schema_field(serializers.DictField(child=serializers.FloatField()))
    def get_risk_bands(self, obj: ModelVersion) -> dict[str, float]:
        bands = obj.manifest.get("risk_bands") or {}
        return {str(k): float(v) for k, v in bands.items() if isinstance(v, int | float)}


# Cases ---------------------------------------------------------------------------------------------------


class QualityCheckSerializer(serializers.Serializer):
    value = serializers.FloatField(help_text="What the check measured on the image.")
    threshold = serializers.FloatField(help_text="The model package's threshold for this check.")
    passed = serializers.BooleanField()


class AssessmentSerializer(serializers.Serializer):
    """The AI safety gate's outcome for one image."""

    status = serializers.ChoiceField(
        source="assessment",
        choices=Assessment.choices,
        help_text="`assessed`: the probability counts towards the case risk. `not_assessed`: the AI could not "
        "assess the image (see `reasons`); it has no probability and no risk band.",
    )
    reasons = serializers.ListField(
        child=serializers.ChoiceField(choices=list(NOT_ASSESSED_REASONS)),
        help_text="Why the image was not assessed: "
        + "; ".join(f"`{k}`: {v}" for k, v in NOT_ASSESSED_REASONS.items()),
    )
    explanation = serializers.CharField(help_text="A plain sentence for people (empty when assessed).")
    quality = serializers.DictField(
        child=QualityCheckSerializer(),
        help_text="Quality check name (`blur`, `brightness`, `clipped`, `min_side`, `aspect`) -> measure.",
    )
    ood_score = serializers.FloatField(
        allow_null=True,
        help_text="Out-of-distribution score of the image (higher: less like dermoscopy); null when the model "
        "package has no OOD gate.",
    )


class PredictionSerializer(serializers.ModelSerializer):
    model_version = ModelVersionBriefSerializer()
    probability = serializers.FloatField(
        allow_null=True, help_text="Ensemble probability of malignancy; null when the image was not assessed."
    )
    risk_band = serializers.ChoiceField(
        choices=[*RiskBand.choices, ("", "Not assessed")], help_text="Empty when the image was not assessed."
    )
    assessment = AssessmentSerializer(source="*", help_text="The AI safety gate's outcome for this image.")
    member_probabilities = serializers.DictField(
        child=serializers.FloatField(), help_text="Ensemble member name -> probability of malignancy."
    )
    class_probabilities = serializers.DictField(
        child=serializers.FloatField(),
        help_text="Diagnosis -> probability: the AI's seven-class differential (akiec, bcc, bkl, df, mel, nv, "
        "vasc; its malignant classes sum to `probability`) when the model provides one, the classes of a "
        "multiclass model, or empty.",
    )

    class Meta:
        model = Prediction
        fields = [
            "model_version",
            "probability",
            "risk_band",
            "assessment",
            "member_probabilities",
            "class_probabilities",
            "created_at",
        ]
        read_only_fields = fields


class ImageSerializer(serializers.ModelSerializer):
    predictions = PredictionSerializer(many=True, read_only=True, help_text="Newest first.")

    class Meta:
        model = LesionImage
        fields = [
            "id",
            "position",
            "round",
            "width",
            "height",
            "content_type",
            "size_bytes",
            "sha256",
            "predictions",
        ]
        read_only_fields = fields


class ReviewSerializer(serializers.ModelSerializer):
    reviewer = UserBriefSerializer()
    supersedes = serializers.IntegerField(source="supersedes_id", allow_null=True)

    class Meta:
        model = Review
        fields = [
            "id",
            "reviewer",
            "diagnosis",
            "malignant",
            "management",
            "follow_up_months",
            "notes",
            "ai_flagged",
            "agrees_with_ai",
            "justification",
            "correction_reason",
            "supersedes",
            "created_at",
        ]
        read_only_fields = fields


class ImageRequestSerializer(serializers.ModelSerializer):
    requested_by = UserBriefSerializer()
    reason = serializers.ChoiceField(choices=ImageRequestReason.choices)

    class Meta:
        model = ImageRequest
        fields = ["id", "requested_by", "reason", "note", "round", "created_at", "resolved_at"]
        read_only_fields = fields


class ImageRequestCreateSerializer(serializers.Serializer):
    reason = serializers.ChoiceField(choices=ImageRequestReason.choices)
    note = serializers.CharField(
        max_length=2000, required=False, default="", allow_blank=True, help_text="Required for `other`."
    )


class TurnaroundSerializer(serializers.Serializer):
    organization_id = serializers.IntegerField()
    organization = serializers.CharField()
    reports = serializers.IntegerField(help_text="First reports signed in the window (addenda excluded).")
    median_hours = serializers.FloatField(allow_null=True)
    p90_hours = serializers.FloatField(allow_null=True, help_text="90th percentile (nearest rank).")


class TurnaroundResponseSerializer(serializers.Serializer):
    days = serializers.IntegerField()
    results = TurnaroundSerializer(many=True)


class TurnaroundFilterSerializer(serializers.Serializer):
    days = serializers.IntegerField(required=False, default=7, min_value=1, max_value=366)


class ReportSerializer(serializers.ModelSerializer):
    case = serializers.IntegerField(source="case_id")
    is_addendum = serializers.BooleanField()
    supersedes = serializers.UUIDField(source="supersedes.uid", allow_null=True, default=None)
    download_url = serializers.SerializerMethodField()

    class Meta:
        model = Report
        fields = [
            "uid",
            "case",
            "is_addendum",
            "supersedes",
            "signer_name",
            "signed_at",
            "sha256",
            "download_url",
        ]
        read_only_fields = fields

    def get_download_url(self, obj: Report) -> str:
        path = reverse("api:report-download", kwargs={"uid": obj.uid})
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request else path


REPORT_STATES = [
    ("not_reviewed", "No dermatologist's review yet: no report."),
    ("generating", "Reviewed: the signed report (or, after a correction, its addendum) is being made."),
    ("available", "The signed report is ready: `id` and `url` point to the newest one."),
]


def _newest_report_uid(case: Case):
    if hasattr(case, "newest_report_uid"):  # annotated by the list views
        return case.newest_report_uid
    if "reports" in getattr(case, "_prefetched_objects_cache", {}):  # the detail view
        reports = sorted(case.reports.all(), key=lambda r: (r.created_at, r.pk))
        return reports[-1].uid if reports else None
    return (
        Report.objects.filter(case=case).order_by("-created_at", "-pk").values_list("uid", flat=True).first()
    )


class CaseReportSerializer(serializers.Serializer):
    id = serializers.UUIDField(
        allow_null=True,
        help_text="The newest signed report's uid (`GET /reports/{uid}/`); null before the first.",
    )
    url = serializers.URLField(allow_null=True, help_text="Download URL of that report's signed PDF.")
    state = serializers.ChoiceField(choices=REPORT_STATES)


@extend_schema_field(CaseReportSerializer)
class CaseReportField(serializers.Field):
    """The case's report in one object, so that a client polling a case knows when the report is there."""

    def __init__(self, **kwargs):
        kwargs["source"] = "*"
        kwargs["read_only"] = True
        super().__init__(**kwargs)

    def to_representation(self, case: Case) -> dict:
        uid = _newest_report_uid(case)
        url = None
        if uid is not None:
            path = reverse("api:report-download", kwargs={"uid": uid})
            request = self.context.get("request")
            url = request.build_absolute_uri(path) if request else path
        if case.status == CaseStatus.REPORTED:
            state = "available"
        elif case.status == CaseStatus.REVIEWED:
            state = "generating"
        else:
            state = "not_reviewed"
        return {"id": str(uid) if uid else None, "url": url, "state": state}


class CaseListSerializer(serializers.ModelSerializer):
    organization = serializers.IntegerField(source="organization_id")
    lesion = serializers.IntegerField(source="lesion_id")
    patient = serializers.IntegerField(source="lesion.patient_id")
    patient_reference = serializers.CharField(source="lesion.patient.reference")
    status = serializers.ChoiceField(choices=CaseStatus.choices)
    priority = serializers.ChoiceField(choices=Priority.choices)
    risk_band = serializers.ChoiceField(
        choices=[*RiskBand.choices, ("", "Not analysed")], help_text="Empty until the analysis is done."
    )
    image_count = serializers.SerializerMethodField()
    model_version = ModelVersionBriefSerializer(allow_null=True)
    report = CaseReportField()
    ai_assessment = serializers.ChoiceField(
        choices=[*CaseAssessment.choices, ("", "Not analysed")],
        help_text="AI safety gate: `assessed` (every image), `partial` (the risk comes only from the assessed "
        "images), `not_assessed` (no image could be assessed: no risk, no band; the case still awaits review).",
    )

    class Meta:
        model = Case
        fields = [
            "id",
            "organization",
            "lesion",
            "patient",
            "patient_reference",
            "status",
            "priority",
            "risk",
            "risk_band",
            "ai_assessment",
            "model_version",
            "image_count",
            "report",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_image_count(self, obj: Case) -> int:
        # Lists annotate the count; the detail view has the images prefetched.
        count = getattr(obj, "image_count", None)
        return count if count is not None else len(obj.images.all())


class CaseStatusSerializer(serializers.ModelSerializer):
    status = serializers.ChoiceField(choices=CaseStatus.choices)
    risk_band = serializers.ChoiceField(choices=[*RiskBand.choices, ("", "Not analysed")])
    ai_assessment = serializers.ChoiceField(
        choices=[*CaseAssessment.choices, ("", "Not analysed")],
        help_text="AI safety gate: `assessed`, `partial` or `not_assessed`; empty until analysed.",
    )
    done = serializers.SerializerMethodField(
        help_text="True once polling can stop: the signed report is available (status `reported`, "
        "`report.state` `available`) or the analysis failed (status `failed`). Not at `reviewed`: the report "
        "is still being made then."
    )
    report = CaseReportField()
    analysis_delayed = serializers.BooleanField(
        read_only=True,
        help_text="True while the case is stored but not yet queued for analysis because the analysis queue is "
        'unavailable ("AI result delayed"); it is queued automatically within 30 s of the queue\'s return.',
    )

    class Meta:
        model = Case
        fields = [
            "id",
            "status",
            "risk",
            "risk_band",
            "ai_assessment",
            "failure_reason",
            "done",
            "report",
            "analysis_delayed",
            "updated_at",
        ]
        read_only_fields = fields

    def get_done(self, obj: Case) -> bool:
        return obj.status in (CaseStatus.REPORTED, CaseStatus.FAILED)


class CaseDetailSerializer(CaseListSerializer):
    submitted_by = UserBriefSerializer()
    images = ImageSerializer(many=True)
    reviews = ReviewSerializer(
        many=True, help_text="Oldest first; a correction supersedes the review before it."
    )
    reports = ReportSerializer(
        many=True, help_text="Oldest first; an addendum supersedes the report before it."
    )
    sex_at_submission = serializers.ChoiceField(choices=Sex.choices)
    site_at_submission = serializers.ChoiceField(choices=Site.choices)
    image_requests = ImageRequestSerializer(
        many=True, help_text="Requests for better images, oldest first; `round` numbers the image sets."
    )

    class Meta(CaseListSerializer.Meta):
        fields = [
            *CaseListSerializer.Meta.fields,
            "clinical_notes",
            "submitted_by",
            "age_at_submission",
            "sex_at_submission",
            "site_at_submission",
            "failure_reason",
            "submitted_at",
            "analysed_at",
            "images",
            "image_requests",
            "reviews",
            "reports",
        ]
        read_only_fields = fields


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


class VerificationSerializer(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=["valid", "unreadable", "no_signature", "altered", "untrusted", "not_registered"],
        help_text="`valid` only for an intact report signed by this platform and identical to the stored copy.",
    )
    message = serializers.CharField(help_text="A sentence describing the result.")
    valid = serializers.BooleanField()
    sha256 = serializers.CharField(allow_blank=True)
    size_bytes = serializers.IntegerField()
    intact = serializers.BooleanField(allow_null=True)
    trusted = serializers.BooleanField(allow_null=True)
    signer_name = serializers.CharField(allow_blank=True)
    certificate_subject = serializers.CharField(allow_blank=True)
    signed_at = serializers.DateTimeField(allow_null=True)
    reason = serializers.CharField(allow_blank=True)
    matches_stored = serializers.BooleanField()
    report_uid = serializers.CharField(allow_null=True, help_text="Only when the file is a stored report.")
    case_id = serializers.IntegerField(allow_null=True)
    is_addendum = serializers.BooleanField()
    supersedes_uid = serializers.CharField(allow_null=True)
    superseded_by_uid = serializers.CharField(
        allow_null=True, help_text="Set if a later addendum corrected it."
    )
    details = serializers.ListField(child=serializers.CharField())
