"""How well the retrieval embedding finds lesions of the same kind, and how fast (pure: NumPy only).

``retrieval_report`` is what ``python -m training evaluate-explanations`` prints beside the heatmaps'
deletion test, and what ``scripts/retrieval_eval.py`` measures on the bundled model (docs/similarity.md).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from similarity.index import VectorIndex, normalise_rows


def precision_at_k(neighbour_labels: np.ndarray, query_labels: np.ndarray) -> float:
    """Share of the (Q, k) neighbours whose label equals their query's, over all queries."""
    if neighbour_labels.size == 0:
        return float("nan")
    return float(np.mean(neighbour_labels == np.asarray(query_labels)[:, None]))


def retrieval_report(
    query_vectors: np.ndarray,
    query_labels: Sequence,
    ref_vectors: np.ndarray,
    ref_labels: Sequence,
    *,
    k: int = 5,
) -> dict:
    """Exact cosine nearest neighbours of each query among the references.

    Returns ``retrieval_precision_at_<k>`` (share of the k nearest references with the query's label, e.g.
    malignant/benign), ``retrieval_ms_p95`` (95th percentile of one query's search time over the reference
    matrix, one query at a time as the pages ask) and ``references`` (the library's size)."""
    queries = normalise_rows(np.asarray(query_vectors, dtype=np.float32))
    refs = np.asarray(ref_vectors, dtype=np.float32)
    query_labels, ref_labels = np.asarray(query_labels), np.asarray(ref_labels)
    if len(queries) != len(query_labels) or len(refs) != len(ref_labels):
        raise ValueError("one label per vector is needed")
    if len(refs) == 0:
        raise ValueError("no reference vectors")
    index = VectorIndex(refs)
    k = min(k, len(refs))
    neighbours, times = [], []
    for query in queries:
        started = time.perf_counter()
        rows, _ = index.search(query, k)
        times.append((time.perf_counter() - started) * 1000.0)
        neighbours.append(rows)
    labels = ref_labels[np.array(neighbours, dtype=np.int64)] if neighbours else np.empty((0, k))
    return {
        f"retrieval_precision_at_{k}": round(precision_at_k(labels, query_labels), 4),
        "retrieval_ms_p95": round(float(np.percentile(times, 95)), 3) if times else float("nan"),
        "references": int(len(refs)),
    }
