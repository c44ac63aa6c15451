"""The declared interface through which the analysis task stores embeddings (``inference.services``).

``inference`` imports this module of ``similarity`` and nothing else; it imports nothing from ``inference``,
so the two apps meet here only (tests/test_architecture.py).
"""

from collections.abc import Sequence

import numpy as np

from similarity import pgvector
from similarity.models import Embedding


def embedding_store(
    *, model_version_id: int, method: str, vector: np.ndarray, image_id=None, reference_id=None
):
    """Store (or replace) one image's embedding under one model version: idempotent per pair."""
    vector = np.ascontiguousarray(vector, dtype="<f4").ravel()
    embedding, _ = Embedding.objects.update_or_create(
        model_version_id=model_version_id,
        image_id=image_id,
        reference_id=reference_id,
        defaults={"method": method, "dims": int(vector.shape[0]), "vector": vector.tobytes()},
    )
    if pgvector.available():
        pgvector.store(embedding.pk, vector)
    return embedding


def case_embeddings_record(
    *, model_version_id: int, method: str, image_ids: Sequence[int], vectors: Sequence[np.ndarray | None]
) -> int:
    """Store the embeddings of a case's images (an image without a vector is skipped); returns how many."""
    stored = 0
    for image_id, vector in zip(image_ids, vectors, strict=True):
        if vector is not None:
            embedding_store(
                model_version_id=model_version_id, method=method, vector=vector, image_id=image_id
            )
            stored += 1
    return stored
