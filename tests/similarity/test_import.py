"""``manage.py import_reference_set``: every row or none, bad rows named by line, source and licence shown."""

import csv
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from cases.audit import AuditAction
from cases.models import AuditEvent
from learning.services import EXPORT_COLUMNS
from similarity.models import Embedding, ReferenceImage, ReferenceSet
from tests.similarity.conftest import colour_image

COLUMNS = list(EXPORT_COLUMNS)  # the data CSV format (training/data.py reads it)


def write_set(folder: Path, rows: list[dict], *, missing: tuple[str, ...] = ()) -> Path:
    (folder / "images").mkdir(parents=True, exist_ok=True)
    for k, row in enumerate(rows):
        if row["filename"] not in missing:
            (folder / row["filename"]).write_bytes(colour_image(row.pop("rgb", (120, 80, 60)), seed=k))
        row.pop("rgb", None)
    path = folder / "labels.csv"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c, "") for c in COLUMNS})
    return path


def row(image_id: str, diagnosis: str, malignant: str, rgb=(120, 80, 60)) -> dict:
    return {
        "image_id": image_id,
        "filename": f"images/{image_id}.png",
        "diagnosis": diagnosis,
        "malignant": malignant,
        "age": "55",
        "sex": "female",
        "anatom_site": "torso",
        "source": "atlas",
        "rgb": rgb,
    }


def media_files(settings) -> list[Path]:
    root = Path(settings.MEDIA_ROOT) / "references"
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def test_bad_rows_refuse_the_file_with_their_line_numbers_and_nothing_is_imported(
    feature_model, tmp_path, settings
):
    rows = [
        row("R1", "mel", "1"),
        row("R2", "nv", "0"),  # its image is missing: line 3
        row("R3", "mystery", ""),  # no benign/malignant label: line 4
        row("R1", "nv", "0"),
    ]
    path = write_set(tmp_path / "set", rows, missing=("images/R2.png",))
    with pytest.raises(CommandError) as refused:
        call_command("import_reference_set", str(path), "--source", "Atlas", "--licence", "CC-BY 4.0")
    message = str(refused.value)
    assert "Nothing imported" in message and "line 3" in message and "line 4" in message
    assert "does not exist" in message and "unknown label" in message
    assert ReferenceSet.objects.count() == 0 and ReferenceImage.objects.count() == 0
    assert media_files(settings) == []


def test_a_repeated_image_id_is_refused_with_both_lines(feature_model, tmp_path, settings):
    path = write_set(tmp_path / "set", [row("R1", "mel", "1"), row("R2", "nv", "0"), row("R1", "nv", "0")])
    with pytest.raises(CommandError, match="line 4: image id R1 is already on line 2"):
        call_command("import_reference_set", str(path))
    assert ReferenceImage.objects.count() == 0 and media_files(settings) == []


def test_an_import_stores_thumbnails_features_source_and_licence_and_no_patient_data(
    feature_model, tmp_path, settings, client, dermatologist, clinician, submit
):
    path = write_set(
        tmp_path / "set", [row("R1", "mel", "1", (200, 40, 40)), row("R2", "nv", "0", (40, 200, 40))]
    )
    call_command("import_reference_set", str(path), "--source", "Test atlas", "--licence", "CC-BY 4.0")
    reference_set = ReferenceSet.objects.get()
    assert (reference_set.source, reference_set.licence) == ("Test atlas", "CC-BY 4.0")
    assert ReferenceImage.objects.count() == 2
    assert Embedding.objects.filter(reference__isnull=False, model_version=feature_model).count() == 2
    event = AuditEvent.objects.get(action=AuditAction.REFERENCE_SET_IMPORT)
    assert event.details["images"] == 2 and event.details["licence"] == "CC-BY 4.0"
    # Two stored files per image (the copy features are recomputed from, and the thumbnail).
    assert len(media_files(settings)) == 4

    query = submit(clinician, (205, 45, 40))
    client.force_login(dermatologist)
    body = client.get(reverse("api:case-similar", args=[query.pk])).json()
    first = body["images"][0]["lesions"][0]
    assert (first["kind"], first["diagnosis"], first["malignant"]) == ("reference", "mel", True)
    assert (first["source"], first["licence"]) == ("Test atlas", "CC-BY 4.0")
    page = client.get(reverse("review_case", args=[query.pk])).content.decode()
    assert "reference: Test atlas (CC-BY 4.0)" in page
    thumbnail = client.get(first["thumbnail_url"])
    assert thumbnail.status_code == 200 and thumbnail["Content-Type"] == "image/jpeg"
    assert b"".join(thumbnail.streaming_content)[:2] == b"\xff\xd8"
    client.logout()
    assert client.get(first["thumbnail_url"]).status_code == 302  # signed-in staff only

    with pytest.raises(CommandError, match="already imported"):
        call_command("import_reference_set", str(path), "--source", "Test atlas")
