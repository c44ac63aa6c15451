"""The similar-lesions half of ``python -m training evaluate-explanations``: retrieval precision@5 and search
time of the package's embedding (``similarity.embedding``, as the platform computes it) against a labelled
reference CSV (``similarity.evaluation.retrieval_report``)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np


def embed_records(ensemble, records, *, batch: int = 16, progress: str = "") -> tuple[np.ndarray, str]:
    """(N, d) retrieval embeddings of ``records`` through the runtime, made by
    ``similarity.embedding.embeddings_from_run`` exactly as the analysis task makes them, and the method."""
    from similarity.embedding import embeddings_from_run

    rows, method = [], None
    started = time.perf_counter()
    for start in range(0, len(records), batch):
        chunk = records[start : start + batch]
        metadata = [(r.age, r.sex or None, r.site or None) for r in chunk]
        outcomes, features, _ = ensemble.run_with_features(
            ensemble.prepare([r.path for r in chunk], metadata)
        )
        made = embeddings_from_run(ensemble, outcomes, features)
        if made is None or any(v is None for v in made.vectors):
            raise ValueError("this package declares no pooled features: there is nothing to retrieve with")
        rows += made.vectors
        method = made.method
        if progress:
            done = start + len(chunk)
            print(
                f"{progress}: {done}/{len(records)} images, {time.perf_counter() - started:.0f} s",
                file=sys.stderr,
            )
    return np.stack(rows).astype(np.float32), str(method)


def retrieval_metrics(
    model: str | Path,
    queries,
    reference_data,
    *,
    max_queries: int = 300,
    max_references: int | None = None,
    seed: int = 0,
) -> dict:
    """``queries``: training.data records (both labels); a sample of at most ``max_queries`` is searched among
    the images of ``reference_data`` (a labels CSV or several; at most ``max_references``, sampled), less any
    image or lesion that is also a query. Labels are malignant/benign."""
    from inference.runtime import Ensemble
    from inference.sessions import CPU, RuntimeConfig
    from similarity.evaluation import retrieval_report
    from training.data import load_dataset
    from training.evaluate import load_package

    if max_queries < 1:
        raise ValueError("--retrieval-queries must be at least 1")
    rng = np.random.default_rng(seed)
    queries = list(queries)
    if len(queries) > max_queries:
        queries = [queries[i] for i in sorted(rng.choice(len(queries), max_queries, replace=False))]
    taken = {r.image_id for r in queries} | {r.group for r in queries}
    references = [
        r
        for r in load_dataset(reference_data, check_images=False).records
        if r.image_id not in taken and r.group not in taken
    ]
    if max_references is not None and len(references) > max_references:
        references = [
            references[i] for i in sorted(rng.choice(len(references), max_references, replace=False))
        ]
    if not queries or not references:
        raise ValueError("retrieval needs query images and reference images that are not queries")
    folder, manifest = load_package(model)
    ensemble = Ensemble(folder, manifest, RuntimeConfig(providers=(CPU,)), heatmaps=False)
    q, method = embed_records(ensemble, queries, progress="retrieval queries")
    r, _ = embed_records(ensemble, references, progress="retrieval references")
    report = retrieval_report(q, [x.malignant for x in queries], r, [x.malignant for x in references], k=5)
    return {**report, "retrieval_queries": len(queries), "retrieval_embedding": method}
