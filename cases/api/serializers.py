"""Response shapes of API v1 (request shapes: ``cases/api/requests.py``, re-exported below). Serializers check
shape only; business rules live in ``cases.services`` and visibility in ``cases.selectors``."""

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from cases.api.requests import MAX_ID as MAX_ID
from cases.api.requests import QUEUE_STATUSES as QUEUE_STATUSES

# Request shapes (cases/api/requests.py), named here too: views use one module for every shape.
from cases.api.requests import CaseCreateSerializer as CaseCreateSerializer
from cases.api.requests import CaseFilterSerializer as CaseFilterSerializer
from cases.api.requests import CorrectionCreateSerializer as CorrectionCreateSerializer
from cases.api.requests import ImageRequestCreateSerializer as ImageRequestCreateSerializer
from cases.api.requests import ImagesAddSerializer as ImagesAddSerializer
from cases.api.requests import LesionCreateSerializer as LesionCreateSerializer
from cases.api.requests import LesionFilterSerializer as LesionFilterSerializer
from cases.api.requests import LoginSerializer as LoginSerializer
from cases.api.requests import LogoutSerializer as LogoutSerializer
from cases.api.requests import PatientCreateSerializer as PatientCreateSerializer
from cases.api.requests import PatientFilterSerializer as PatientFilterSerializer
from cases.api.requests import QueueFilterSerializer as QueueFilterSerializer
from cases.api.requests import RefreshSerializer as RefreshSerializer
from cases.api.requests import ReportVerifySerializer as ReportVerifySerializer
from cases.api.requests import ReviewCreateSerializer as ReviewCreateSerializer
from cases.api.requests import TurnaroundFilterSerializer as TurnaroundFilterSerializer
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
    Priority,
    RiskBand,
    Role,
    Sex,
    Site,
)

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


class LesionSerializer(serializers.ModelSerializer):
    patient = serializers.IntegerField(source="patient_id", read_only=True)

    class Meta:
        model = Lesion
        fields = ["id", "patient", "site", "label", "created_at"]
        read_only_fields = fields


# Model versions ------------------------------------------------------------------------------------------


# Which model version produced a result (the inference app's API serves the whole version).
class ModelVersionBriefSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    name = serializers.CharField(read_only=True)
    version = serializers.CharField(read_only=True)


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

    heatmap_url = serializers.SerializerMethodField(
        help_text="Where the model looked: the URL of this prediction's heatmap (a PNG overlay, "
        "`GET /api/v1/cases/{id}/predictions/{prediction}/heatmap/`); null when the model version makes no "
        "heatmap or the image was not assessed."
    )

    class Meta:
        model = Prediction
        fields = [
            "id",
            "model_version",
            "probability",
            "risk_band",
            "assessment",
            "member_probabilities",
            "class_probabilities",
            "heatmap_url",
            "created_at",
        ]
        read_only_fields = fields

    def get_heatmap_url(self, obj: Prediction) -> str | None:
        if not obj.heatmap:
            return None
        path = reverse("api:prediction-heatmap", kwargs={"pk": obj.image.case_id, "prediction": obj.pk})
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request else path


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


class TurnaroundSerializer(serializers.Serializer):
    organization_id = serializers.IntegerField()
    organization = serializers.CharField()
    reports = serializers.IntegerField(help_text="First reports signed in the window (addenda excluded).")
    median_hours = serializers.FloatField(allow_null=True)
    p90_hours = serializers.FloatField(allow_null=True, help_text="90th percentile (nearest rank).")


class TurnaroundResponseSerializer(serializers.Serializer):
    days = serializers.IntegerField()
    results = TurnaroundSerializer(many=True)


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
