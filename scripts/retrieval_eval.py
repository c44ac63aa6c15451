"""Retrieval precision of the similar-lesion embedding on the bundled model (docs/similarity.md).

Queries: a sample of the validation images of the model's own split (models/default/training/split.json
``val``); references: a sample of its training images. Both are embedded through the runtime exactly as the
platform does (``Ensemble.run_with_features`` -> ``similarity.embedding``), and scored with
``similarity.evaluation.retrieval_report`` on the malignant/benign label. CPU time caps the sample (default
300 queries, 1500 references, seed 0: about 3-15 minutes on 2 cores).

    PYTHONPATH=. .venv/bin/python scripts/retrieval_eval.py [--data ../shared/data/derm] [--model models/default]
        [--queries 300] [--references 1500] [--components 64] [--features-cache /tmp/features.npz] [--json]

``--features-cache`` keeps the members' pooled features, so that a second run (other embeddings) is instant.
"""

import argparse
import csv
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from inference.package import read_manifest  # noqa: E402
from inference.runtime import Ensemble  # noqa: E402
from inference.sessions import RuntimeConfig  # noqa: E402
from similarity import embedding  # noqa: E402
from similarity.embedding import GATE_PCA, MEAN, embed_members, projections_of  # noqa: E402
from similarity.evaluation import retrieval_report  # noqa: E402


def member_features(ensemble: Ensemble, paths: list[Path], batch: int = 16) -> dict[str, np.ndarray]:
    parts: dict[str, list[np.ndarray]] = {}
    started = time.perf_counter()
    for start in range(0, len(paths), batch):
        chunk = [str(p) for p in paths[start : start + batch]]
        inputs = ensemble.prepare(chunk, [(None, None, None)] * len(chunk))
        _, features, _ = ensemble.run_with_features(inputs)
        if not features:
            raise SystemExit("this package declares no pooled features: there is nothing to retrieve with")
        for name, value in features.items():
            parts.setdefault(name, []).append(value)
        print(
            f"  {start + len(chunk)}/{len(paths)} images, {time.perf_counter() - started:.0f} s",
            file=sys.stderr,
        )
    return {name: np.concatenate(value) for name, value in parts.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "derm"))
    parser.add_argument("--model", default=str(ROOT / "models" / "default"))
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--references", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--features-cache", default="")
    parser.add_argument(
        "--components",
        type=int,
        default=embedding.COMPONENTS_PER_MEMBER,
        help="gate_pca components per member",
    )
    parser.add_argument("--json", action="store_true", help="print only the JSON")
    args = parser.parse_args()
    embedding.COMPONENTS_PER_MEMBER = args.components
    data, model = Path(args.data), Path(args.model)
    with (data / "labels.csv").open(newline="") as handle:
        rows = {row["image_id"]: row for row in csv.DictReader(handle)}
    split = json.loads((model / "training" / "split.json").read_text())
    rng = random.Random(args.seed)
    queries = rng.sample(split["val"], min(args.queries, len(split["val"])))
    references = rng.sample(split["train"], min(args.references, len(split["train"])))
    manifest, _ = read_manifest(model)
    ensemble = Ensemble(model, manifest, RuntimeConfig(providers=("CPUExecutionProvider",)))
    cache = Path(args.features_cache) if args.features_cache else None
    if cache and cache.is_file():
        stored = np.load(cache)
        assert list(stored["query_ids"]) == queries and list(stored["reference_ids"]) == references, (
            "the cache holds another sample"
        )
        names = [m.name for m in manifest.members]
        query_features = {n: stored[f"query_{n}"] for n in names}
        reference_features = {n: stored[f"reference_{n}"] for n in names}
    else:
        query_features = member_features(ensemble, [data / rows[i]["filename"] for i in queries])
        reference_features = member_features(ensemble, [data / rows[i]["filename"] for i in references])
        if cache:
            np.savez(
                cache,
                query_ids=np.array(queries),
                reference_ids=np.array(references),
                **{f"query_{n}": v for n, v in query_features.items()},
                **{f"reference_{n}": v for n, v in reference_features.items()},
            )
    query_labels = np.array([int(rows[i]["malignant"]) for i in queries])
    reference_labels = np.array([int(rows[i]["malignant"]) for i in references])
    weights = {m.name: m.weight for m in manifest.members}
    projections = projections_of(ensemble)
    results = {}
    for method in (GATE_PCA, MEAN) if projections else (MEAN,):
        q, used = embed_members(query_features, weights=weights, projections=projections, method=method)
        r, _ = embed_members(reference_features, weights=weights, projections=projections, method=method)
        report = retrieval_report(q, query_labels, r, reference_labels, k=5)
        for label, name in ((1, "malignant"), (0, "benign")):
            picked = query_labels == label
            part = retrieval_report(q[picked], query_labels[picked], r, reference_labels, k=5)
            report[f"retrieval_precision_at_5_{name}_queries"] = part["retrieval_precision_at_5"]
        report["dims"] = int(q.shape[1])
        results[used] = report
    summary = {
        "model": f"{manifest.name} {manifest.version}",
        "queries": len(queries),
        "malignant_queries": int(query_labels.sum()),
        "references": len(references),
        "malignant_share_of_references": round(float(reference_labels.mean()), 3),
        "default_embedding": GATE_PCA if projections else MEAN,
        "results": results,
    }
    if not args.json:
        for method, report in results.items():
            print(
                f"{method:9} {report['dims']:5d} dims  precision@5 {report['retrieval_precision_at_5']:.3f} "
                f"(malignant queries {report['retrieval_precision_at_5_malignant_queries']:.3f}, benign "
                f"{report['retrieval_precision_at_5_benign_queries']:.3f})  p95 {report['retrieval_ms_p95']:.2f} ms"
            )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
