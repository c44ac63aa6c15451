"""export_training_set: reviewed cases -> a training data folder that training's loader reads without a bad row."""

import csv
import io

import pytest
from django.core.management import CommandError, call_command
from PIL import Image

from cases.models import AuditEvent
from learning.services import training_sharing_set
from tests.support.factories import LesionFactory, PatientFactory
from tests.support.images import image_bytes, upload
from training.data import load_dataset
from training.evaluate import evaluate_csv

EXIF = Image.Exif()
EXIF[0x010E] = "Jane Roe, clinic room 4"  # ImageDescription


def _export(out, **options) -> str:
    stdout = io.StringIO()
    call_command("export_training_set", "--out", str(out), stdout=stdout, **options)
    return stdout.getvalue()


def _rows(out) -> list[dict]:
    with (out / "labels.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_an_organization_that_has_not_opted_in_is_refused_and_nothing_is_written(reviewed, org, tmp_path):
    reviewed(0.9, malignant=True)
    with pytest.raises(CommandError, match="has not opted in"):
        _export(tmp_path / "out", organization=org.slug)
    assert not (tmp_path / "out").exists()
    with pytest.raises(CommandError, match="no organization has opted in"):
        _export(tmp_path / "out")


def test_refuses_a_non_empty_or_unwritable_output_folder(reviewed, org, tmp_path):
    reviewed(0.9, malignant=True)
    training_sharing_set(actor=None, organization=org, enabled=True)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("someone's work")
    with pytest.raises(CommandError, match="is not empty"):
        _export(busy)
    assert (busy / "keep.txt").read_text() == "someone's work"
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(CommandError, match="not a folder"):
        _export(a_file)
    with pytest.raises(CommandError, match="not writable"):
        _export(a_file / "below")


def test_export_writes_the_latest_review_as_label_and_nothing_identifying(
    reviewed, make_case, org, clinician, tmp_path, other_org, other_clinician
):
    patient = PatientFactory(organization=org, created_by=clinician, reference="MRN-778812")
    lesion = LesionFactory(patient=patient, label="left shoulder mole")
    reviewed(0.8, malignant=True, n_images=2, lesion=lesion, clinical_notes="Bleeding since May, Jane Roe")
    reviewed(0.1, malignant=False)
    # another organization's reviewed case never leaves it unless that organization opts in
    training_sharing_set(actor=None, organization=org, enabled=True)

    out = tmp_path / "export"
    message = _export(out, organization=org.slug)
    assert "Exported 2 cases (3 images, 1 malignant)" in message
    rows = _rows(out)
    assert [r["diagnosis"] for r in rows].count("mel") == 2
    assert {r["malignant"] for r in rows if r["diagnosis"] == "mel"} == {"1"}
    mel = [r for r in rows if r["diagnosis"] == "mel"]
    assert mel[0]["lesion_id"] == mel[1]["lesion_id"], "one lesion, one group: splits keep it together"
    assert {r["source"] for r in rows} == {f"teleder:{org.slug}"}
    assert all(r["sex"] == "female" and r["anatom_site"] == "torso" for r in rows)

    forbidden = [b"MRN-778812", b"Jane Roe", b"left shoulder", b"Bleeding", b"Reviewer note", b"room 4"]
    for path in out.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            assert not any(word in content for word in forbidden), path
    for row in rows:
        with Image.open(out / row["filename"]) as image:
            assert not image.getexif(), "no EXIF survives the re-encoding"
            assert "exif" not in image.info and "icc_profile" not in image.info
    assert AuditEvent.objects.filter(action="training_set.export", object_id=str(org.pk)).count() == 1


def test_images_are_re_encoded_without_metadata(clinician, dermatologist, record_analysis, org, tmp_path):
    from cases import services

    lesion = LesionFactory(patient=PatientFactory(organization=org, created_by=clinician))
    case = services.case_submit(
        actor=clinician, lesion=lesion, images=[upload("a.jpg", image_bytes(exif=EXIF.tobytes()))]
    ).case
    record_analysis(case, [0.5])
    services.review_submit(
        actor=dermatologist, case=case, diagnosis="mel", malignant=True, management="biopsy"
    )
    training_sharing_set(actor=None, organization=org, enabled=True)
    out = tmp_path / "out"
    _export(out)
    (row,) = _rows(out)
    content = (out / row["filename"]).read_bytes()
    assert b"Jane Roe" not in content and b"Exif" not in content
    with Image.open(out / row["filename"]) as image:
        assert image.size == (64, 48)


def test_a_correction_replaces_the_label_and_lesion_ids_are_stable(reviewed, dermatologist, org, tmp_path):
    from cases import services
    from cases.models import CaseStatus

    case = reviewed(0.2, malignant=False)
    case.refresh_from_db()
    case.status = CaseStatus.REPORTED  # as after the report task
    case.save(update_fields=["status"])
    services.review_correct(
        actor=dermatologist,
        case=case,
        reason="Histology of the excision showed melanoma in situ.",
        diagnosis="mel",
        malignant=True,
        management="biopsy",
    )
    training_sharing_set(actor=None, organization=org, enabled=True)
    first, second = tmp_path / "a", tmp_path / "b"
    _export(first)
    _export(second)
    rows = _rows(first)
    assert [(r["diagnosis"], r["malignant"]) for r in rows] == [("mel", "1")]
    assert rows == _rows(second), "the same data exports to the same ids"


def test_since_limits_the_export_to_recent_reviews(reviewed, org, tmp_path):
    reviewed(0.9, malignant=True)
    training_sharing_set(actor=None, organization=org, enabled=True)
    out = tmp_path / "future"
    message = _export(out, since="2999-01-01")
    assert "Exported 0 cases" in message
    assert _rows(out) == []
    with pytest.raises(CommandError, match="--since"):
        _export(tmp_path / "bad", since="last tuesday")


def test_round_trip_reviewed_cases_train_and_evaluate(reviewed, org, tmp_path, registered_model):
    """Cases reviewed in the platform -> export -> training's loader (0 bad rows) -> evaluate with a package."""
    for i in range(6):
        reviewed(0.7 if i % 2 else 0.2, malignant=bool(i % 2))
    training_sharing_set(actor=None, organization=org, enabled=True)
    out = tmp_path / "round-trip"
    _export(out)
    dataset = load_dataset(out / "labels.csv", strict=True)
    assert len(dataset.records) == 6 and not dataset.bad_rows
    assert sorted(r.malignant for r in dataset.records) == [0, 0, 0, 1, 1, 1]
    report = evaluate_csv(out / "labels.csv", registered_model.package_path, strict=True)
    assert report["bad_rows"] == 0 and report["n"] == 6 and report["positives"] == 3
    assert 0.0 <= report["auc"] <= 1.0


def test_sharing_changes_are_audited_and_admin_only(org, clinician, platform_admin):
    from django.core.exceptions import PermissionDenied

    with pytest.raises(PermissionDenied):
        training_sharing_set(actor=clinician, organization=org, enabled=True)
    training_sharing_set(actor=platform_admin, organization=org, enabled=True)
    training_sharing_set(actor=platform_admin, organization=org, enabled=True)  # no change, no event
    events = AuditEvent.objects.filter(action="organization.training_sharing")
    assert [e.details["enabled"] for e in events] == [True]
    out = io.StringIO()
    call_command("training_data_sharing", org.slug, "--disable", stdout=out)
    assert "training data sharing off" in out.getvalue()
    with pytest.raises(CommandError, match="no organization"):
        call_command("training_data_sharing", "nope")
