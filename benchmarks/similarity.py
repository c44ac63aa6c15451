"""Exact cosine search of the similar-lesion library (claim: p95 <= 50 ms at 100,000 references on this CPU).

Synthetic unit vectors of the real dimensions: 256 (``gate_pca``, the bundled model's embedding: 4 members x
64) and 1280 (``mean``, a package without the gate's PCA). Each query is searched alone, as a page asks, the
way ``similarity.search.nearest`` does: the rows are grouped by organization and a query reads only the
reference sets' and its organization's rows (40 % + 20 % of them here). The baseline, timed in the same run,
is the naive search: every row scored, masked, and fully sorted.
The rebuild cost (bytes from the database to one matrix, what a library change costs once) is timed too.
With ``--pg DSN`` (PostgreSQL with the ``vector`` extension), the same search in SQL is timed as well.

    .venv/bin/python benchmarks/similarity.py [--sizes 10000,100000] [--dims 256,1280] [--queries 200]
        [--pg postgresql://postgres@127.0.0.1:5432/test]

Prints a table and, on the last line, JSON: p50/p95 ms per (backend, dims, size): wall time, and the search
thread's CPU time (what a query costs without waiting for a CPU: on a shared, busy machine the wall time is
mostly waiting), with the load average at the end of the run.
"""

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from similarity.index import VectorIndex, normalise_rows  # noqa: E402

TARGET_MS = 50.0
K = 6


def percentiles(times: list[float]) -> tuple[float, float]:
    return statistics.median(times), float(np.percentile(times, 95))


def numpy_search(vectors: np.ndarray, queries: np.ndarray, organization: np.ndarray) -> dict:
    """As ``similarity.search.nearest`` does: rows grouped by organization, a query reads the references' and
    one organization's rows (views), minus the query's own lesion. Baseline: every row, masked, fully sorted."""
    order = np.argsort(organization, kind="stable")
    organization = organization[order]
    index = VectorIndex(vectors[order])
    blocks = {}
    for org in (-1, 1):
        where = np.flatnonzero(organization == org)
        blocks[org] = (int(where[0]), int(where[-1]) + 1)
    ranges = [blocks[-1], blocks[1]]
    searched = sum(b - a for a, b in ranges)
    lesion = np.zeros(searched, dtype=bool)
    lesion[-3:] = True  # the query's own lesion: excluded
    mask_all = (organization == -1) | (organization == 1)
    times, cpu, baseline = [], [], []
    for query in queries:
        started, started_cpu = time.perf_counter(), time.thread_time()
        index.search(query, K, ranges=ranges, mask=~lesion)
        times.append((time.perf_counter() - started) * 1000)
        cpu.append((time.thread_time() - started_cpu) * 1000)
        started = time.perf_counter()
        scores = np.where(mask_all, index.matrix @ query, -np.inf)  # numpy's default: BLAS, all its threads
        np.argsort(-scores, kind="stable")[:K]
        baseline.append((time.perf_counter() - started) * 1000)
    p50, p95 = percentiles(times)
    b50, b95 = percentiles(baseline)
    c50, c95 = percentiles(cpu)
    return {
        "p50_ms": round(p50, 3),
        "p95_ms": round(p95, 3),
        "cpu_p50_ms": round(c50, 3),
        "cpu_p95_ms": round(c95, 3),
        "rows_read": searched,
        "baseline_p95_ms": round(b95, 3),
        "speedup_vs_baseline_p95": round(b95 / p95, 2),
    }


def rebuild_ms(vectors: np.ndarray) -> float:
    """Stored float32 bytes (one per row, as the database returns them) to one searchable matrix."""
    rows = [row.astype("<f4").tobytes() for row in vectors]
    started = time.perf_counter()
    matrix = np.frombuffer(b"".join(rows), dtype="<f4").reshape(len(rows), vectors.shape[1])
    VectorIndex(matrix)
    return round((time.perf_counter() - started) * 1000, 1)


def pg_search(dsn: str, vectors: np.ndarray, queries: np.ndarray, organization: np.ndarray) -> dict | str:
    import psycopg2

    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    cur = conn.cursor()
    try:
        cur.execute("CREATE EXTENSION IF NOT EXISTS vector")
    except psycopg2.Error as exc:
        return f"not measured: the vector extension is not available ({str(exc).strip().splitlines()[0]})"
    cur.execute("DROP TABLE IF EXISTS bench_similarity")
    cur.execute("CREATE TABLE bench_similarity (id bigint PRIMARY KEY, organization int, v vector)")
    literal = lambda row: "[" + ",".join(f"{x:.7g}" for x in row) + "]"  # noqa: E731
    for start in range(0, len(vectors), 2000):
        args = [
            (start + i, int(organization[start + i]), literal(row))
            for i, row in enumerate(vectors[start : start + 2000])
        ]
        cur.executemany("INSERT INTO bench_similarity VALUES (%s, %s, %s::vector)", args)
    cur.execute("ANALYZE bench_similarity")
    times = []
    for query in queries:
        started = time.perf_counter()
        cur.execute(
            "SELECT id FROM bench_similarity WHERE organization IN (-1, 1) ORDER BY v <=> %s::vector, id LIMIT %s",
            [literal(query), K],
        )
        cur.fetchall()
        times.append((time.perf_counter() - started) * 1000)
    cur.execute("DROP TABLE bench_similarity")
    p50, p95 = percentiles(times)
    return {"p50_ms": round(p50, 3), "p95_ms": round(p95, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--dims", default="256,1280")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--pg", default="", help="PostgreSQL DSN: also time pgvector (needs the extension)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    results, rows = {}, []
    for dims in (int(d) for d in args.dims.split(",")):
        for size in (int(s) for s in args.sizes.split(",")):
            vectors = normalise_rows(rng.standard_normal((size, dims), dtype=np.float32))
            queries = normalise_rows(rng.standard_normal((args.queries, dims), dtype=np.float32))
            # -1: reference sets; 1..5: organizations. The mask: references and organization 1.
            organization = rng.choice([-1, 1, 2, 3, 4, 5], size=size, p=[0.4, 0.2, 0.1, 0.1, 0.1, 0.1])
            measured = numpy_search(vectors, queries, organization)
            measured["rebuild_ms"] = rebuild_ms(vectors)
            results[f"numpy_{dims}_{size}"] = measured
            rows.append(
                (
                    "numpy",
                    dims,
                    size,
                    measured["p50_ms"],
                    measured["p95_ms"],
                    measured["cpu_p95_ms"],
                    measured["baseline_p95_ms"],
                )
            )
            if args.pg:
                pg = pg_search(args.pg, vectors, queries[: min(len(queries), 50)], organization)
                results[f"pgvector_{dims}_{size}"] = pg
                if isinstance(pg, dict):
                    rows.append(
                        ("pgvector", dims, size, pg["p50_ms"], pg["p95_ms"], float("nan"), float("nan"))
                    )
    load = os.getloadavg()[0]
    print(
        f"load average {load:.1f} on {os.cpu_count()} CPUs (wall times include waiting for a CPU; CPU times do not)"
    )
    print(
        f"{'backend':9} {'dims':>5} {'refs':>7} {'p50 ms':>8} {'p95 ms':>8} {'CPU p95 ms':>10} {'baseline p95':>13}"
    )
    for backend, dims, size, p50, p95, cpu95, base in rows:
        print(f"{backend:9} {dims:5d} {size:7d} {p50:8.2f} {p95:8.2f} {cpu95:10.2f} {base:13.2f}")
    for key, value in results.items():
        if isinstance(value, str):
            print(f"{key}: {value}")
    largest = max(int(s) for s in args.sizes.split(","))
    default_dims = int(args.dims.split(",")[0])
    measured = results[f"numpy_{default_dims}_{largest}"]
    for kind in ("p95_ms", "cpu_p95_ms"):
        verdict = "met" if measured[kind] <= TARGET_MS else "NOT met"
        print(
            f"target {kind} <= {TARGET_MS} ms at {largest:,} references, {default_dims} dims (numpy): {verdict}"
        )
    print(json.dumps({"target_ms": TARGET_MS, "load_average": round(load, 1), **results}))


if __name__ == "__main__":
    main()
