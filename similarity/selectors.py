"""Reads of the similarity library: what it holds for a model version, what is missing, and the similar
confirmed lesions of an image (search in ``similarity.search``).

The library of a case: the reviewed cases of the case's own organization (the dermatologist's latest
diagnosis is the label) and the imported reference sets (no patient data). Never another organization's
images, whoever reads: a platform administrator looking at a case sees that organization's library too.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.db.models import Exists, OuterRef, QuerySet

from cases.models import CaseStatus, LesionImage, Review
from cases.permissions import cases_visible_to
from inference.models import ModelVersion
from inference.selectors import active_model_version
from similarity.models import Embedding, ReferenceImage, ReferenceSet

# Cases whose images are in the library (their diagnosis is confirmed by a dermatologist's review).
LIBRARY_STATUSES = (CaseStatus.REVIEWED, CaseStatus.REPORTED)
# Cases whose images get embeddings: the library, and cases waiting for review (they are the queries).
EMBEDDED_STATUSES = (CaseStatus.AWAITING_REVIEW, *LIBRARY_STATUSES)
TOP_K = 6


@dataclass(frozen=True)
class Progress:
    computed: int
    total: int

    @property
    def done(self) -> bool:
        return self.computed >= self.total

    @property
    def text(self) -> str:
        return f"{self.computed:,} / {self.total:,}"


def _embedded_images() -> QuerySet[LesionImage]:
    return LesionImage.objects.filter(case__status__in=EMBEDDED_STATUSES)


def feature_progress(*, model_version: ModelVersion) -> Progress:
    """How many library (and awaiting-review) images have an embedding under ``model_version``."""
    have = Embedding.objects.filter(model_version=model_version)
    computed = (
        have.filter(image__case__status__in=EMBEDDED_STATUSES).count()
        + have.filter(reference__isnull=False).count()
    )
    return Progress(computed, _embedded_images().count() + ReferenceImage.objects.count())


def images_missing_embeddings(*, model_version: ModelVersion, limit: int) -> tuple[list[int], list[int]]:
    """Up to ``limit`` ids without an embedding under ``model_version``: images of cases awaiting review, of
    reviewed cases, then references."""
    has = Embedding.objects.filter(model_version=model_version)
    missing = _embedded_images().exclude(Exists(has.filter(image=OuterRef("pk")))).order_by("pk")
    # Cases waiting for review first: their review pages need their own images' features to search at all.
    images = list(
        missing.filter(case__status=CaseStatus.AWAITING_REVIEW).values_list("pk", flat=True)[:limit]
    )
    images += list(
        missing.filter(case__status__in=LIBRARY_STATUSES).values_list("pk", flat=True)[: limit - len(images)]
    )
    references = list(
        ReferenceImage.objects.exclude(Exists(has.filter(reference=OuterRef("pk"))))
        .order_by("pk")
        .values_list("pk", flat=True)[: max(limit - len(images), 0)]
    )
    return images, references


def case_images(ids: Iterable[int]) -> QuerySet[LesionImage]:
    return LesionImage.objects.filter(pk__in=list(ids)).order_by("pk")


def reference_sets() -> QuerySet[ReferenceSet]:
    return ReferenceSet.objects.all()


def latest_diagnoses(case_ids: Iterable[int]) -> dict[int, Review]:
    """Each case's current review (a correction supersedes the earlier one)."""
    latest: dict[int, Review] = {}
    for review in Review.objects.filter(case_id__in=list(case_ids)).order_by("case_id", "created_at", "pk"):
        latest[review.case_id] = review
    return latest


@dataclass(frozen=True)
class SimilarLesion:
    """One similar confirmed lesion, as pages, the API and the report show it: no patient data."""

    kind: str  # "case" (a reviewed case of the same organization) or "reference"
    diagnosis: str  # the dermatologist's diagnosis, or the reference set's label
    malignant: bool
    distance: float  # cosine distance, 0 = same direction
    thumbnail_url: str
    source: str = ""  # the reference set's source (references)
    licence: str = ""
    case_id: int | None = None
    image_id: int | None = None
    reference_id: int | None = None


@dataclass(frozen=True)
class SimilarForImage:
    image_id: int
    position: int
    lesions: list[SimilarLesion]


@dataclass(frozen=True)
class SimilarResult:
    """Similar lesions of each image of a case; ``unavailable`` says why there are none."""

    images: list[SimilarForImage]
    unavailable: str = ""
    partial: str = ""  # e.g. the library is being recomputed for the active model


def case_for_similarity(*, user, case_id: int):
    """The case if ``user`` may see it (cases.permissions), else None."""
    return cases_visible_to(user).filter(pk=case_id).first()


def active_version() -> ModelVersion | None:
    return active_model_version()
