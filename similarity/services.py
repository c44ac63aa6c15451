"""Writes of the similarity library: importing a reference set, (re)computing embeddings for a model version.

The ensemble comes from ``inference.registry`` (the same cached sessions the analysis uses); features and
embeddings from ``similarity.embedding``. Every write is idempotent per (image, model version).
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from PIL import Image

from cases.audit import AuditAction, audit_record
from inference.models import ModelVersion
from inference.preprocessing import PreprocessingError, load_image
from inference.registry import ensemble_for
from inference.runtime import ModelError
from inference.selectors import active_model_version
from similarity import selectors
from similarity.embedding import Embeddings, embeddings_from_run
from similarity.models import ReferenceImage, ReferenceSet
from similarity.store import embedding_store

logger = logging.getLogger(__name__)

STORED_PX = 600  # the reference copy features are recomputed from (the members read 224-260 px)
THUMBNAIL_PX = 160
BATCH = 16


class ImportRefused(ValueError):
    """The reference CSV cannot be imported; the message lists the bad rows with their line numbers."""


def _jpeg(image: Image.Image, max_px: int) -> bytes:
    copy = image.copy()
    copy.thumbnail((max_px, max_px))
    out = io.BytesIO()
    copy.save(out, format="JPEG", quality=90)  # a new file: no EXIF or other metadata travels
    return out.getvalue()


def embed_images(version: ModelVersion, pictures: list[Image.Image]) -> Embeddings | None:
    """Embeddings of decoded images under ``version`` (None when its package declares no features)."""
    ensemble = ensemble_for(version)
    vectors, method = [], None
    for start in range(0, len(pictures), BATCH):
        chunk = pictures[start : start + BATCH]
        inputs = ensemble.prepare(chunk, [(None, None, None)] * len(chunk))
        outcomes, features, _ = ensemble.run_with_features(inputs)
        embeddings = embeddings_from_run(ensemble, outcomes, features)
        if embeddings is None:
            return None
        vectors += embeddings.vectors
        method = embeddings.method
    return Embeddings(vectors, method or "")


@dataclass(frozen=True)
class _Row:
    image_id: str
    diagnosis: str
    malignant: bool
    stored: bytes
    thumbnail: bytes
    picture: Image.Image


def _read_rows(csv_path: Path) -> list[_Row]:
    """Every row of the data CSV (``training.data``'s format and rules), or ImportRefused listing the bad
    ones with their line numbers."""
    from training.data import DatasetError, load_dataset  # pure NumPy/PIL; only the CLI import needs it

    try:
        dataset = load_dataset(csv_path, strict=True, check_images=True)
    except DatasetError as exc:
        raise ImportRefused(str(exc)) from exc
    lines: dict[str, list[int]] = {}
    for record in dataset.records:
        lines.setdefault(record.image_id, []).append(record.line)
    duplicates = [
        f"line {ls[1]}: image id {i} is already on line {ls[0]}" for i, ls in lines.items() if len(ls) > 1
    ]
    if duplicates:
        raise ImportRefused(f"{csv_path}: {len(duplicates)} bad row(s): {'; '.join(duplicates[:20])}")
    rows, bad = [], []
    for record in dataset.records:
        try:
            picture = load_image(Path(record.path).read_bytes())
        except (OSError, PreprocessingError) as exc:
            bad.append(f"line {record.line}: {exc}")
            continue
        stored = _jpeg(picture, STORED_PX)
        rows.append(
            _Row(
                record.image_id,
                record.diagnosis,
                bool(record.malignant),
                stored,
                _jpeg(picture, THUMBNAIL_PX),
                load_image(stored),
            )
        )
    if bad:
        raise ImportRefused(f"{csv_path}: {len(bad)} bad row(s): {'; '.join(bad[:20])}")
    return rows


def reference_set_import(
    *, csv_path: str | Path, source: str = "", licence: str = "", actor: Any = None
) -> ReferenceSet:
    """Import a labelled image set as a reference set: every row or none.

    The CSV is read with the data rules of ``training.data`` (a bad row refuses the whole file, with line
    numbers); each image is stored re-encoded (at most 600 px, and a 160 px thumbnail) with its diagnosis and
    benign/malignant label, and its embedding under the active model when there is one. No patient data is
    kept: age, sex, site and lesion ids are not imported.
    """
    csv_path = Path(csv_path)
    source = (source or csv_path.stem).strip()[:200]
    if ReferenceSet.objects.filter(source=source).exists():
        raise ImportRefused(f"a reference set named {source!r} is already imported; choose another --source")
    rows = _read_rows(csv_path)
    version = active_model_version()
    embeddings = embed_images(version, [r.picture for r in rows]) if version is not None else None
    saved: list[str] = []
    try:
        with transaction.atomic():
            reference_set = ReferenceSet.objects.create(
                source=source, licence=licence.strip(), csv_name=csv_path.name, imported_by=actor
            )
            for k, row in enumerate(rows):
                image = ReferenceImage(
                    reference_set=reference_set,
                    image_id=row.image_id,
                    diagnosis=row.diagnosis,
                    malignant=row.malignant,
                    sha256=hashlib.sha256(row.stored).hexdigest(),
                )
                image.file.save("image.jpg", ContentFile(row.stored), save=False)
                saved.append(image.file.name)
                image.thumbnail.save("thumb.jpg", ContentFile(row.thumbnail), save=False)
                saved.append(image.thumbnail.name)
                image.full_clean()
                image.save()
                if embeddings is not None and embeddings.vectors[k] is not None:
                    embedding_store(
                        model_version_id=version.pk,
                        method=embeddings.method,
                        vector=embeddings.vectors[k],
                        reference_id=image.pk,
                    )
            audit_record(
                actor=actor,
                action=AuditAction.REFERENCE_SET_IMPORT,
                obj=reference_set,
                source=source,
                licence=reference_set.licence,
                images=len(rows),
                malignant=sum(r.malignant for r in rows),
                diagnoses=dict(Counter(r.diagnosis for r in rows)),
                model=str(version) if embeddings is not None else "",
            )
    except BaseException:
        for name in saved:  # nothing half-imported: the files of a rolled-back import go too
            default_storage.delete(name)
        raise
    return reference_set


@dataclass(frozen=True)
class RecomputeResult:
    computed: int
    remaining: int
    skipped: int = 0  # unreadable images (left without an embedding, logged)


def _picture(field_file) -> Image.Image | None:
    try:
        with field_file.open("rb") as handle:
            return load_image(handle.read())
    except (OSError, PreprocessingError):
        logger.warning("similarity: %s cannot be read; it stays without an embedding", field_file.name)
        return None


def embeddings_compute_missing(*, model_version: ModelVersion, limit: int = 64) -> RecomputeResult:
    """Compute up to ``limit`` missing embeddings of the library under ``model_version`` (case images of
    analysed cases, then reference images). Resumable and idempotent: what exists is never computed again."""
    image_ids, reference_ids = selectors.images_missing_embeddings(model_version=model_version, limit=limit)
    items: list[tuple[str, int, Image.Image]] = []
    skipped = 0
    for image in selectors.case_images(image_ids):
        picture = _picture(image.file)
        if picture is None:
            skipped += 1
        else:
            items.append(("image", image.pk, picture))
    for reference in ReferenceImage.objects.filter(pk__in=reference_ids):
        picture = _picture(reference.file)
        if picture is None:
            skipped += 1
        else:
            items.append(("reference", reference.pk, picture))
    computed = 0
    if items:
        try:
            embeddings = embed_images(model_version, [picture for _, _, picture in items])
        except (ModelError, PreprocessingError, ValueError, ValidationError) as exc:
            logger.warning("similarity: features of %s could not be computed: %s", model_version, exc)
            embeddings = None
        if embeddings is not None:
            for (kind, pk, _), vector in zip(items, embeddings.vectors, strict=True):
                if vector is not None:
                    key = {"image_id": pk} if kind == "image" else {"reference_id": pk}
                    embedding_store(
                        model_version_id=model_version.pk, method=embeddings.method, vector=vector, **key
                    )
                    computed += 1
    progress = selectors.feature_progress(model_version=model_version)
    return RecomputeResult(computed, progress.total - progress.computed, skipped)
