"""REST: the agreement figures for dashboards and mobile apps (dermatologists and administrators)."""

from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response

from cases.api.views import ApiView
from learning.selectors import agreement_table, can_view_agreement, default_filters


class AgreementQuerySerializer(serializers.Serializer):
    since = serializers.DateTimeField(required=False, help_text="Start of the period (default: 90 days ago).")
    until = serializers.DateTimeField(required=False, help_text="End of the period (default: now).")
    organization = serializers.IntegerField(required=False, min_value=1, help_text="Organization id.")
    model_version = serializers.IntegerField(required=False, min_value=1, help_text="Model version id.")

    def validate(self, attrs):
        if attrs.get("since") and attrs.get("until") and attrs["since"] > attrs["until"]:
            raise serializers.ValidationError({"since": "must not be after until"})
        return attrs


class MissSerializer(serializers.Serializer):
    case_id = serializers.IntegerField()
    organization = serializers.CharField()
    risk = serializers.FloatField()
    risk_band = serializers.CharField()
    diagnosis = serializers.CharField()
    reviewed_at = serializers.DateTimeField()


class AgreementSerializer(serializers.Serializer):
    model_version_id = serializers.IntegerField(allow_null=True)
    model_version = serializers.CharField()
    organization_id = serializers.IntegerField()
    organization = serializers.CharField()
    threshold = serializers.FloatField(allow_null=True)
    cases = serializers.IntegerField()
    assessed = serializers.IntegerField()
    not_assessed = serializers.IntegerField()
    true_positive = serializers.IntegerField()
    false_negative = serializers.IntegerField()
    false_positive = serializers.IntegerField()
    true_negative = serializers.IntegerField()
    sensitivity = serializers.FloatField(allow_null=True)
    sensitivity_ci95 = serializers.ListField(child=serializers.FloatField(), allow_null=True)
    specificity = serializers.FloatField(allow_null=True)
    specificity_ci95 = serializers.ListField(child=serializers.FloatField(), allow_null=True)
    auc = serializers.FloatField(allow_null=True)
    ece = serializers.FloatField(allow_null=True)
    mean_risk = serializers.FloatField(allow_null=True)
    malignant_rate = serializers.FloatField(allow_null=True)
    not_assessed_rate = serializers.FloatField(allow_null=True)
    misses = MissSerializer(many=True)


class AgreementResponseSerializer(serializers.Serializer):
    since = serializers.DateTimeField()
    until = serializers.DateTimeField()
    results = AgreementSerializer(many=True)


class AgreementView(ApiView):
    """AI vs dermatologist agreement per model version and organization."""

    @extend_schema(
        tags=["learning"],
        summary="How the AI agreed with dermatologists' malignant calls",
        description=(
            "Per model version and organization, over the period: the AI's call (case risk at the version's "
            "threshold) against the dermatologist's malignant call on the current review. Sensitivity and "
            "specificity with exact (Clopper-Pearson) 95 % intervals, AUC, expected calibration error, the "
            "share of cases the AI did not assess, and the misses (AI low, dermatologist malignant) for audit. "
            "Dermatologists see their organizations, administrators all; clinicians get 403."
        ),
        parameters=[AgreementQuerySerializer],
        responses={200: AgreementResponseSerializer},
        examples=[
            OpenApiExample(
                "One model version, one organization",
                response_only=True,
                value={
                    "since": "2026-09-01T00:00:00Z",
                    "until": "2026-11-30T00:00:00Z",
                    "results": [
                        {
                            "model_version_id": 3,
                            "model_version": "teleder-derm 1.2.1",
                            "organization_id": 1,
                            "organization": "Demo Skin Clinic",
                            "threshold": 0.107,
                            "cases": 120,
                            "assessed": 118,
                            "not_assessed": 2,
                            "true_positive": 19,
                            "false_negative": 1,
                            "false_positive": 40,
                            "true_negative": 58,
                            "sensitivity": 0.95,
                            "sensitivity_ci95": [0.751, 0.999],
                            "specificity": 0.592,
                            "specificity_ci95": [0.488, 0.69],
                            "auc": 0.91,
                            "ece": 0.05,
                            "mean_risk": 0.22,
                            "malignant_rate": 0.17,
                            "not_assessed_rate": 0.017,
                            "misses": [
                                {
                                    "case_id": 812,
                                    "organization": "Demo Skin Clinic",
                                    "risk": 0.06,
                                    "risk_band": "low",
                                    "diagnosis": "mel",
                                    "reviewed_at": "2026-11-02T10:15:00Z",
                                }
                            ],
                        }
                    ],
                },
            )
        ],
    )
    def get(self, request: Request) -> Response:
        if not can_view_agreement(request.user):
            raise PermissionDenied("Only dermatologists and administrators can see the agreement figures.")
        query = self.query(AgreementQuerySerializer)
        filters = default_filters(
            since=query.get("since"),
            until=query.get("until"),
            organization_id=query.get("organization"),
            model_version_id=query.get("model_version"),
        )
        rows = agreement_table(user=request.user, filters=filters)
        return Response(
            AgreementResponseSerializer(
                {"since": filters.since, "until": filters.until, "results": rows}
            ).data
        )
