"""REST: the similar confirmed lesions of each image of a case (``GET /api/v1/cases/{id}/similar/``)."""

from dataclasses import asdict

from django.http import Http404
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from cases.api.views import ApiView
from similarity.search import similar_for_case
from similarity.selectors import case_for_similarity


class SimilarLesionSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=["case", "reference"])
    diagnosis = serializers.CharField(
        help_text="The dermatologist's diagnosis, or the reference set's label."
    )
    malignant = serializers.BooleanField()
    distance = serializers.FloatField(help_text="Cosine distance (0 = the same direction, 2 = opposite).")
    thumbnail_url = serializers.CharField()
    source = serializers.CharField(help_text="The reference set's source (empty for cases).")
    licence = serializers.CharField(help_text="The reference set's licence (empty for cases).")
    case_id = serializers.IntegerField(allow_null=True)
    image_id = serializers.IntegerField(allow_null=True)
    reference_id = serializers.IntegerField(allow_null=True)


class SimilarImageSerializer(serializers.Serializer):
    image_id = serializers.IntegerField()
    position = serializers.IntegerField(help_text="1 for the case's first image.")
    lesions = SimilarLesionSerializer(many=True)


class SimilarResponseSerializer(serializers.Serializer):
    case_id = serializers.IntegerField()
    images = SimilarImageSerializer(many=True)
    unavailable = serializers.CharField(help_text="Why there are no similar lesions (empty when there are).")
    partial = serializers.CharField(help_text="Set while the library is recomputed for a new model.")


class CaseSimilarView(ApiView):
    """The 6 most similar confirmed lesions per image."""

    @extend_schema(
        tags=["cases"],
        summary="Similar confirmed lesions of each image of a case",
        description=(
            "Exact nearest neighbours (cosine) of each image's embedding under the active model, among the "
            "reviewed cases of the case's own organization (other lesions; the label is the dermatologist's "
            "current diagnosis) and the imported reference sets (with their source and licence). No patient "
            "data, and never another organization's images. A case the caller may not see is a 404."
        ),
        responses={200: SimilarResponseSerializer},
        examples=[
            OpenApiExample(
                "One image",
                response_only=True,
                value={
                    "case_id": 41,
                    "images": [
                        {
                            "image_id": 97,
                            "position": 1,
                            "lesions": [
                                {
                                    "kind": "reference",
                                    "diagnosis": "mel",
                                    "malignant": True,
                                    "distance": 0.083,
                                    "thumbnail_url": "/similarity/references/12/thumbnail/",
                                    "source": "ISIC 2019 sample",
                                    "licence": "CC-BY-NC 4.0",
                                    "case_id": None,
                                    "image_id": None,
                                    "reference_id": 12,
                                }
                            ],
                        }
                    ],
                    "unavailable": "",
                    "partial": "",
                },
            )
        ],
    )
    def get(self, request: Request, pk: int) -> Response:
        case = case_for_similarity(user=request.user, case_id=pk)
        if case is None:
            raise Http404("No such case.")
        result = similar_for_case(case)
        return Response(
            SimilarResponseSerializer(
                {
                    "case_id": case.pk,
                    "images": [asdict(image) for image in result.images],
                    "unavailable": result.unavailable,
                    "partial": result.partial,
                }
            ).data
        )
