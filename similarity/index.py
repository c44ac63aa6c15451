"""Exact nearest neighbours by cosine over an in-memory matrix (pure: NumPy only).

The vectors are L2-normalised when the index is built, so a cosine similarity is one matrix-vector product;
the top k come from ``argpartition`` (linear) and only those k are sorted. A search may be narrowed to row
ranges (the library keeps each organization's rows contiguous, so a reader's search reads only the reference
sets and their organization: views, no copies) and a boolean mask over those rows.
"""

from __future__ import annotations

import numpy as np


def normalise_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (all-zero rows stay zero), as float32."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim == 1:
        vectors = vectors[None, :]
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


def _dot(matrix: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Matrix-vector product on one thread. A multi-threaded BLAS call is no faster for this memory-bound
    product and, on a busy machine, its threads wait for each other: measured p95 at 10,000 x 256 went from
    222 ms (OpenBLAS, 2 threads, load 15) to 6 ms (one thread) (benchmarks/similarity.py)."""
    return np.einsum("ij,j->i", matrix, query)


class VectorIndex:
    """A (N, d) matrix of unit vectors searched exactly: cosine distance = 1 - dot product."""

    def __init__(self, vectors: np.ndarray):
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2:
            raise ValueError(f"vectors must be (N, d), got shape {list(vectors.shape)}")
        self.matrix = np.ascontiguousarray(normalise_rows(vectors)) if len(vectors) else vectors

    def __len__(self) -> int:
        return int(self.matrix.shape[0])

    @property
    def dims(self) -> int:
        return int(self.matrix.shape[1])

    def search(
        self,
        query: np.ndarray,
        k: int,
        *,
        mask: np.ndarray | None = None,
        ranges: list[tuple[int, int]] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Row indices of the ``k`` nearest rows (closest first; ties by row index) and their cosine
        distances. ``ranges``: [start, end) row ranges to search (default: all rows); ``mask``: which of
        the searched rows may be returned (bool, one per searched row, in range order)."""
        query = normalise_rows(query)[0]
        if query.shape[0] != self.dims:
            raise ValueError(f"the query has {query.shape[0]} dimensions, the index {self.dims}")
        if ranges is None:
            rows, scores = None, _dot(self.matrix, query)
        else:
            rows = np.concatenate([np.arange(a, b) for a, b in ranges]) if ranges else np.empty(0, np.int64)
            scores = (
                np.concatenate([_dot(self.matrix[a:b], query) for a, b in ranges]) if ranges else np.empty(0)
            )
        top, distances = self._top(scores, k, mask)
        return (top if rows is None else rows[top]), distances

    @staticmethod
    def _top(scores: np.ndarray, k: int, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        if mask is not None:
            scores = np.where(mask, scores, -np.inf)
            k = min(k, int(np.count_nonzero(mask)))
        k = min(k, len(scores))
        if k <= 0:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
        top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
        # Highest similarity first; equal scores by row index, so the order is the same on every run.
        top = top[np.lexsort((top, -scores[top]))]
        return top.astype(np.int64), (1.0 - scores[top]).astype(np.float32)
