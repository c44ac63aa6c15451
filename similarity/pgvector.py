"""The pgvector side of the search: on PostgreSQL with the ``vector`` extension, embeddings are also kept in a
``vector`` column and searched in SQL (``<=>`` is the cosine distance), exactly, with the same results as the
in-process NumPy matrix (tests/similarity/test_search.py compares them when the extension is there).

``ensure_column`` runs in the app's migration and again before a recompute: it creates the extension if it can
and adds the column; without the extension (SQLite, or a PostgreSQL without pgvector) nothing changes and the
NumPy index serves.
"""

from __future__ import annotations

import logging

import numpy as np
from django.db import DatabaseError, connection, transaction

logger = logging.getLogger(__name__)

TABLE = "similarity_embedding"
COLUMN = "vector_pg"
_available: dict[str, bool] = {}


def _has_column() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT 1 FROM information_schema.columns WHERE table_name = %s AND column_name = %s",
            [TABLE, COLUMN],
        )
        return cursor.fetchone() is not None


def ensure_column(schema_connection=None) -> bool:
    """Create the extension and the column when possible; True when the pgvector search can be used."""
    conn = schema_connection or connection
    if conn.vendor != "postgresql":
        return False
    try:
        with transaction.atomic(using=conn.alias), conn.cursor() as cursor:
            cursor.execute("CREATE EXTENSION IF NOT EXISTS vector")
            cursor.execute(f"ALTER TABLE {TABLE} ADD COLUMN IF NOT EXISTS {COLUMN} vector")
            # A vector whose length no longer matches its row (never expected) is dropped, not searched.
            stale = f"{COLUMN} IS NOT NULL AND vector_dims({COLUMN}) <> dims"
            cursor.execute(f"UPDATE {TABLE} SET {COLUMN} = NULL WHERE {stale}")  # noqa: S608  # nosec B608 - constant names
    except DatabaseError as exc:
        logger.info("pgvector is not available (%s); the in-process NumPy index serves", exc)
        _available.pop(conn.alias, None)
        return False
    _available.pop(conn.alias, None)
    return True


def available() -> bool:
    """PostgreSQL with the extension and the column (checked once per process)."""
    if connection.vendor != "postgresql":
        return False
    if connection.alias not in _available:
        try:
            _available[connection.alias] = _has_column()
        except DatabaseError:
            _available[connection.alias] = False
    return _available[connection.alias]


def literal(vector: np.ndarray) -> str:
    return "[" + ",".join(repr(float(x)) for x in np.asarray(vector, dtype=np.float32).ravel()) + "]"


def store(embedding_id: int, vector: np.ndarray) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {TABLE} SET {COLUMN} = %s::vector WHERE id = %s",  # noqa: S608  # nosec B608 - constant names
            [literal(vector), embedding_id],
        )


def backfill() -> int:
    """Fill the column of embeddings stored before the extension was there; returns how many."""
    from similarity.models import Embedding

    done = 0
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id FROM {TABLE} WHERE {COLUMN} IS NULL")  # noqa: S608  # nosec B608 - constant names
        ids = [row[0] for row in cursor.fetchall()]
    for embedding in Embedding.objects.filter(pk__in=ids).only("pk", "vector"):
        store(embedding.pk, embedding.as_array())
        done += 1
    return done


def search(
    *,
    model_version_id: int,
    method: str,
    query: np.ndarray,
    organization_id: int,
    lesion_id: int,
    statuses: tuple[str, ...],
    k: int,
) -> list[tuple[int, float]]:
    """(embedding id, cosine distance) of the k nearest library embeddings, closest first (ties by id)."""
    placeholders = ", ".join(["%s"] * len(statuses))
    # Only constant identifiers are formatted in; every value is a parameter.
    sql = (  # nosec B608
        f"SELECT e.id, (e.{COLUMN} <=> %s::vector) AS distance FROM {TABLE} e "  # noqa: S608  # nosec B608
        "LEFT JOIN cases_lesionimage i ON i.id = e.image_id "
        "LEFT JOIN cases_case c ON c.id = i.case_id "
        f"WHERE e.model_version_id = %s AND e.method = %s AND e.dims = %s AND e.{COLUMN} IS NOT NULL "
        "AND (e.reference_id IS NOT NULL "
        f"OR (c.organization_id = %s AND c.lesion_id <> %s AND c.status IN ({placeholders}))) "
        "ORDER BY distance, e.id LIMIT %s"
    )
    query = np.asarray(query, dtype=np.float32).ravel()
    params = [
        literal(query),
        model_version_id,
        method,
        int(query.shape[0]),
        organization_id,
        lesion_id,
        *statuses,
        k,
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [(int(pk), float(d)) for pk, d in cursor.fetchall()]
