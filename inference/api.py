"""API v1 of the AI service: registered model versions, and activation by administrators.

The endpoints share the API's base view, permissions and error format (``cases.api``); the URLs join the
``api`` namespace in ``teleder/urls.py``.
"""

from django.http import Http404
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from cases.api.base import ApiView
from cases.api.permissions import IsPlatformAdminOrReadOnly
from inference.models import ModelStatus, ModelVersion
from inference.registry import model_activate
from inference.selectors import model_versions


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
        return {str(k): float(v) for k, v in obj.risk_bands.items() if isinstance(v, int | float)}


class ModelVersionListView(ApiView):
    permission_classes = [IsPlatformAdminOrReadOnly]

    @extend_schema(
        tags=["models"],
        summary="Registered model versions",
        description=(
            "Every registered AI model version, newest first, with its status (one is `active`), threshold and "
            "manifest. Read-only for everyone but administrators."
        ),
        responses=ModelVersionSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        return self.page(model_versions().order_by("-created_at", "-pk"), ModelVersionSerializer)


class ModelVersionDetailView(ApiView):
    permission_classes = [IsPlatformAdminOrReadOnly]

    @extend_schema(
        tags=["models"],
        summary="One model version",
        description="One registered model version with its manifest (members, risk bands, threshold).",
        responses=ModelVersionSerializer,
    )
    def get(self, request: Request, pk: int) -> Response:
        return Response(ModelVersionSerializer(_model_version(pk)).data)


class ModelVersionActivateView(ApiView):
    permission_classes = [IsPlatformAdminOrReadOnly]

    @extend_schema(
        tags=["models"],
        summary="Make this model version the active one (administrators)",
        description=(
            "Platform administrators only (403 otherwise). New cases are analysed with this version from now on; the "
            "previous active version is retired, not deleted. Recorded in the audit trail."
        ),
        request=None,
        responses={200: ModelVersionSerializer},
    )
    def post(self, request: Request, pk: int) -> Response:
        version = _model_version(pk)
        activated = model_activate(name=version.name, version=version.version, actor=request.user)
        return Response(ModelVersionSerializer(activated).data)


def _model_version(pk: int) -> ModelVersion:
    try:
        return ModelVersion.objects.get(pk=pk)
    except ModelVersion.DoesNotExist:
        raise Http404("No such model version.") from None
