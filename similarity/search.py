"""Exact cosine search of the similarity library for one image, and the rows pages, API and report show.

Two backends with the same answer: on PostgreSQL with pgvector, SQL (``similarity.pgvector``); otherwise an
in-process NumPy matrix per model version (``similarity.index``), cached and rebuilt when the library
changes (a new embedding, a new review, an imported set: ``_signature``). Both return library rows ordered by
distance, ties by embedding id.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
from django.db.models import Count, Max, Q
from django.urls import reverse

from cases.models import Case, LesionImage, Review
from similarity import pgvector
from similarity.index import VectorIndex
from similarity.models import Embedding, ReferenceImage
from similarity.selectors import (
    LIBRARY_STATUSES,
    TOP_K,
    SimilarForImage,
    SimilarLesion,
    SimilarResult,
    active_version,
    feature_progress,
    latest_diagnoses,
)

NO_MODEL = "No AI model is active, so there are no similar lesions."
NO_FEATURES = "The active model's package declares no image features: similar lesions are not available."
NOT_EMBEDDED = "This case's images have no features under the active model yet: similar lesions will follow."
RECOMPUTING = (
    "The library is being recomputed for the active model ({computed:,} / {total:,} images): "
    "only what is computed so far is searched."
)


@dataclass
class _Library:
    signature: tuple
    index: VectorIndex  # rows grouped by organization (references, organization -1, first), then by id
    embedding_ids: np.ndarray
    lesion_ids: np.ndarray  # -1 for references
    blocks: dict[int, tuple[int, int]]  # organization id (-1: references) -> its [start, end) rows


_CACHE: dict[tuple[int, str], _Library] = {}
_LOCK = threading.Lock()


def _library_rows(version_id: int, method: str):
    return Embedding.objects.filter(model_version_id=version_id, method=method).filter(
        Q(reference__isnull=False) | Q(image__case__status__in=LIBRARY_STATUSES)
    )


def _signature(version_id: int, method: str) -> tuple:
    embeddings = Embedding.objects.filter(model_version_id=version_id, method=method).aggregate(
        n=Count("pk"), last=Max("pk")
    )
    reviews = Review.objects.aggregate(n=Count("pk"), last=Max("pk"))
    return (
        embeddings["n"],
        embeddings["last"],
        reviews["n"],
        reviews["last"],
        ReferenceImage.objects.count(),
    )


def library(version_id: int, method: str) -> _Library:
    """The NumPy library of one model version and method, rebuilt only when it changed."""
    signature = _signature(version_id, method)
    with _LOCK:
        cached = _CACHE.get((version_id, method))
        if cached is not None and cached.signature == signature:
            return cached
    rows = list(
        _library_rows(version_id, method).values_list(
            "pk", "dims", "vector", "image__case__organization_id", "image__case__lesion_id"
        )
    )
    dims = max((r[1] for r in rows), default=0)
    rows = sorted(
        (
            (pk, vector, -1 if org is None else org, -1 if lesion is None else lesion)
            for pk, d, vector, org, lesion in rows
            if d == dims
        ),
        key=lambda r: (r[2], r[0]),
    )
    organizations = np.array([r[2] for r in rows], dtype=np.int64)
    blocks = {}
    for org in np.unique(organizations):
        where = np.flatnonzero(organizations == org)
        blocks[int(org)] = (int(where[0]), int(where[-1]) + 1)
    matrix = np.frombuffer(b"".join(bytes(r[1]) for r in rows), dtype="<f4").reshape(len(rows), dims)
    built = _Library(
        signature,
        VectorIndex(matrix),
        np.array([r[0] for r in rows], dtype=np.int64),
        np.array([r[3] for r in rows], dtype=np.int64),
        blocks,
    )
    with _LOCK:
        _CACHE.clear()  # one version at a time: the active one
        _CACHE[(version_id, method)] = built
    return built


def nearest(
    embedding: Embedding, case: Case, *, k: int = TOP_K, backend: str = "auto"
) -> list[tuple[int, float]]:
    """(embedding id, cosine distance) of the ``k`` library images nearest to ``embedding``: reviewed cases of
    ``case``'s organization (other lesions only) and references, closest first, ties by embedding id.
    ``backend``: auto (pgvector when available), numpy or pgvector."""
    query = embedding.as_array()
    if backend == "pgvector" or (backend == "auto" and pgvector.available()):
        return pgvector.search(
            model_version_id=embedding.model_version_id,
            method=embedding.method,
            query=query,
            organization_id=case.organization_id,
            lesion_id=case.lesion_id,
            statuses=tuple(str(s) for s in LIBRARY_STATUSES),
            k=k,
        )
    lib = library(embedding.model_version_id, embedding.method)
    if len(lib.index) == 0 or lib.index.dims != query.shape[0]:
        return []
    # Only the reference sets' rows and the case's organization's rows are read at all.
    ranges = [lib.blocks[o] for o in (-1, case.organization_id) if o in lib.blocks]
    searched = np.concatenate([lib.lesion_ids[a:b] for a, b in ranges]) if ranges else np.empty(0)
    rows, distances = lib.index.search(query, k, ranges=ranges, mask=searched != case.lesion_id)
    hits = [(int(lib.embedding_ids[r]), float(d)) for r, d in zip(rows, distances, strict=True)]
    return sorted(hits, key=lambda hit: (hit[1], hit[0]))


def _lesions(hits: list[tuple[int, float]]) -> list[SimilarLesion]:
    by_id = {
        e.pk: e
        for e in Embedding.objects.filter(pk__in=[pk for pk, _ in hits]).select_related(
            "image", "reference__reference_set"
        )
    }
    reviews = latest_diagnoses(e.image.case_id for e in by_id.values() if e.image_id)
    lesions = []
    for pk, distance in hits:
        e = by_id.get(pk)
        if e is None:
            continue
        if e.reference_id:
            ref = e.reference
            lesions.append(
                SimilarLesion(
                    kind="reference",
                    diagnosis=ref.diagnosis,
                    malignant=ref.malignant,
                    distance=round(distance, 4),
                    thumbnail_url=reverse("reference_thumbnail", args=[ref.pk]),
                    source=ref.reference_set.source,
                    licence=ref.reference_set.licence,
                    reference_id=ref.pk,
                )
            )
            continue
        review = reviews.get(e.image.case_id)
        if review is None:  # no confirmed diagnosis (cannot happen for a reviewed case; never guessed)
            continue
        lesions.append(
            SimilarLesion(
                kind="case",
                diagnosis=review.get_diagnosis_display(),
                malignant=review.malignant,
                distance=round(distance, 4),
                thumbnail_url=reverse("case_image", args=[e.image.case_id, e.image_id]),
                case_id=e.image.case_id,
                image_id=e.image_id,
            )
        )
    return lesions


def similar_for_case(case: Case, *, k: int = TOP_K, backend: str = "auto") -> SimilarResult:
    """The ``k`` most similar confirmed lesions of each image of ``case`` under the active model. The caller
    has checked that the reader may see ``case`` (``selectors.case_for_similarity``)."""
    version = active_version()
    if version is None:
        return SimilarResult([], unavailable=NO_MODEL)
    images = list(LesionImage.objects.filter(case=case).order_by("position"))
    embeddings = {e.image_id: e for e in Embedding.objects.filter(model_version=version, image__in=images)}
    if not embeddings:
        has_features = Embedding.objects.filter(model_version=version).exists() or _declares_features(version)
        return SimilarResult([], unavailable=NOT_EMBEDDED if has_features else NO_FEATURES)
    result = [
        SimilarForImage(
            image.pk, image.position + 1, _lesions(nearest(embeddings[image.pk], case, k=k, backend=backend))
        )
        for image in images
        if image.pk in embeddings
    ]
    progress = feature_progress(model_version=version)
    partial = "" if progress.done else RECOMPUTING.format(computed=progress.computed, total=progress.total)
    return SimilarResult(result, partial=partial)


def _declares_features(version) -> bool:
    """Whether the package gives pooled features (declared ``outputs.features`` or an AI gate reading them)."""
    manifest = version.manifest or {}
    if (manifest.get("gate") or {}).get("ood"):
        return True
    return any("features" in (m.get("outputs") or {}) for m in manifest.get("members", []))
