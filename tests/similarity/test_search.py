"""The search itself: exact (the same as sorting every distance), ordered, narrowed by organization, the same
on NumPy and pgvector; and the retrieval report's figures."""

import numpy as np
import pytest
from django.db import connection

from similarity import pgvector
from similarity.evaluation import retrieval_report
from similarity.index import VectorIndex, normalise_rows
from similarity.models import Embedding
from similarity.search import nearest


def brute_force(vectors, query, k, allowed):
    distances = 1.0 - normalise_rows(vectors) @ normalise_rows(query)[0]
    order = sorted((d, i) for i, d in enumerate(distances) if allowed[i])
    return [i for _, i in order[:k]], [d for d, _ in order[:k]]


@pytest.mark.parametrize("dims", [3, 256])
def test_the_index_returns_exactly_the_k_nearest_in_order(dims):
    rng = np.random.default_rng(dims)
    vectors = rng.standard_normal((500, dims)).astype(np.float32)
    allowed = rng.random(500) < 0.6
    for query in rng.standard_normal((20, dims)).astype(np.float32):
        rows, distances = VectorIndex(vectors).search(query, 6, mask=allowed)
        expected_rows, expected_distances = brute_force(vectors, query, 6, allowed)
        assert rows.tolist() == expected_rows
        assert np.allclose(distances, expected_distances, atol=1e-5)


def test_row_ranges_read_only_those_rows_and_ties_go_by_row():
    vectors = np.array([[1, 0], [1, 0], [0, 1], [1, 0.1], [1, 0]], dtype=np.float32)
    index = VectorIndex(vectors)
    rows, distances = index.search(np.array([1, 0]), 3, ranges=[(0, 2), (3, 5)])
    assert rows.tolist() == [0, 1, 4] and np.allclose(distances, 0, atol=1e-6)
    rows, _ = index.search(np.array([1, 0]), 10, ranges=[(2, 4)], mask=np.array([True, False]))
    assert rows.tolist() == [2]


def test_the_retrieval_report_measures_precision_at_5_on_labelled_vectors():
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((2, 64)) * 5
    labels = rng.integers(0, 2, 400)
    vectors = centres[labels] + rng.standard_normal((400, 64))
    report = retrieval_report(vectors[:100], labels[:100], vectors[100:], labels[100:], k=5)
    assert report["retrieval_precision_at_5"] == 1.0 and report["references"] == 300
    assert report["retrieval_ms_p95"] >= 0
    shuffled = retrieval_report(
        vectors[:100], labels[:100], vectors[100:], rng.permutation(labels[100:]), k=5
    )
    assert shuffled["retrieval_precision_at_5"] < 0.7
    with pytest.raises(ValueError, match="one label per vector"):
        retrieval_report(vectors[:3], labels[:2], vectors, labels)


RED, NEAR_RED, BLUE, GREEN = (200, 40, 40), (190, 50, 45), (40, 40, 200), (40, 200, 40)


@pytest.fixture
def org_library(feature_model, submit, confirm, clinician, dermatologist, other_clinician):
    for seed, (rgb, diagnosis) in enumerate([(NEAR_RED, "mel"), (BLUE, "nv"), (GREEN, "bkl"), (RED, "df")]):
        confirm(submit(clinician, rgb, seed=seed), dermatologist, diagnosis, diagnosis == "mel")
    submit(other_clinician, RED, seed=20)  # another organization's image: never a neighbour
    return submit(clinician, RED, seed=30)


def test_numpy_search_orders_the_organizations_library_by_distance(org_library):
    query = Embedding.objects.get(image__case=org_library)
    hits = nearest(query, org_library, k=6, backend="numpy")
    assert len(hits) == 4  # four reviewed cases of the organization; the other one's image is not among them
    distances = [d for _, d in hits]
    assert distances == sorted(distances)
    vectors = {e.pk: e.as_array() for e in Embedding.objects.filter(pk__in=[pk for pk, _ in hits])}
    expected = [1.0 - float(vectors[pk] @ query.as_array()) for pk, _ in hits]
    assert np.allclose(distances, expected, atol=1e-5)


@pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="pgvector needs PostgreSQL (the default test settings use SQLite)",
)
def test_numpy_and_pgvector_give_the_same_neighbours(org_library):
    if not pgvector.ensure_column():
        pytest.skip(
            "the PostgreSQL server has no pgvector extension (Debian 12 ships no postgresql-15-pgvector)"
        )
    pgvector.backfill()
    for embedding in Embedding.objects.filter(image__case__organization=org_library.organization):
        case = embedding.image.case
        numpy_hits = nearest(embedding, case, k=6, backend="numpy")
        pg_hits = nearest(embedding, case, k=6, backend="pgvector")
        assert [pk for pk, _ in numpy_hits] == [pk for pk, _ in pg_hits]
        assert np.allclose([d for _, d in numpy_hits], [d for _, d in pg_hits], atol=1e-5)
