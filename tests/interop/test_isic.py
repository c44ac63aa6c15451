"""The ISIC metadata vocabulary: mapping tables checked against the isic-metadata package, the ISIC-style CSV
export command, and training's data loader reading that CSV (and ISIC Archive downloads)."""

import csv
import io

import pytest
from django.core.management import CommandError, call_command
from isic_metadata.fields import AnatomSiteGeneralEnum
from isic_metadata.metadata import MetadataRow

from cases.models import AuditEvent
from cases.vocabulary import Diagnosis, Site
from interop import isic
from tests.support.images import image_bytes
from training.data import HAM_CLASSES, load_dataset


def test_every_stored_value_maps_to_valid_isic_values():
    assert set(isic.SITE_TO_ISIC) == set(Site.values)
    for diagnosis in Diagnosis.values:
        for malignant in (False, True):
            value = isic.isic_diagnosis(diagnosis, malignant=malignant)
            MetadataRow.model_validate({"diagnosis": value})  # the ISIC schema accepts it


def test_every_isic_general_site_reads_back():
    for member in AnatomSiteGeneralEnum:
        assert isic.site_from_isic(member.value) in Site.values
    assert isic.site_from_isic("posterior torso") == "torso"
    assert isic.site_from_isic("", "Trunk:Posterior trunk:Upper back") == "torso"
    assert isic.site_from_isic("", "") == ""


@pytest.mark.parametrize("diagnosis", HAM_CLASSES)
def test_round_trip_through_isic_keeps_the_ham_class(diagnosis):
    malignant = diagnosis in ("mel", "bcc", "akiec")
    row = isic.export_row(
        isic_id="TD_1_1",
        filename="images/TD_1_1.jpg",
        patient_id="TDP_1",
        lesion_id="TDL_1",
        age=57,
        sex="female",
        site="head/neck",
        diagnosis=diagnosis,
        malignant=malignant,
    )
    label = isic.isic_label(row)
    assert (label.ham_class, label.malignant) == (diagnosis, int(malignant))
    assert row["age_approx"] == "55" and row["anatom_site_general"] == "head/neck"


def test_akiec_follows_the_malignant_flag():
    assert "Squamous cell carcinoma in situ" in isic.isic_diagnosis("akiec", malignant=True)
    assert "Solar or actinic keratosis" in isic.isic_diagnosis("akiec", malignant=False)


def test_legacy_and_terminal_diagnoses():
    assert isic.isic_label({"diagnosis": "melanoma"}) == isic.IsicLabel("mel", 1, "melanoma")
    assert isic.isic_label({"diagnosis": "seborrheic keratosis"}).ham_class == "bkl"
    assert isic.isic_label({"diagnosis": "Nevus"}).ham_class == "nv"
    assert isic.isic_label({"diagnosis_1": "Benign", "diagnosis_2": "Benign - Other"}) == isic.IsicLabel(
        None, 0, "Benign:Benign - Other"
    )
    assert isic.isic_label({"diagnosis": "nevus", "benign_malignant": "malignant"}).malignant == 1


@pytest.mark.django_db
def test_export_command_writes_isic_csv_that_training_reads(
    tmp_path, reported_case, make_case, dermatologist, analysed_case
):
    out = tmp_path / "export"
    stdout = io.StringIO()
    call_command("export_isic_csv", str(out), stdout=stdout)
    assert "Wrote 2 image rows of 1 reported cases" in stdout.getvalue()
    rows = list(csv.DictReader((out / "metadata.csv").open()))
    assert [r["isic_id"] for r in rows] == [f"TD_{reported_case.pk:07d}_1", f"TD_{reported_case.pk:07d}_2"]
    first = rows[0]
    assert first["diagnosis"] == "Malignant:Malignant melanocytic proliferations (Melanoma)"
    assert first["diagnosis_1"] == "Malignant" and first["anatom_site_1"] == "Trunk"
    assert first["anatom_site_general"] == "" and first["sex"] == "female"
    assert first["lesion_id"] == f"TDL_{reported_case.lesion_id}"
    assert reported_case.lesion.patient.reference not in (out / "metadata.csv").read_text()
    for row in rows:
        assert (out / row["filename"]).read_bytes()[:3] == b"\xff\xd8\xff"
    assert AuditEvent.objects.filter(action="case.isic_export", object_id=str(reported_case.pk)).exists()

    binary = load_dataset(out / "metadata.csv", task="binary", strict=True)
    assert [r.malignant for r in binary.records] == [1, 1]
    assert {r.site for r in binary.records} == {"torso"}
    assert {r.group for r in binary.records} == {f"TDL_{reported_case.lesion_id}"}
    multiclass = load_dataset(out / "metadata.csv", task="multiclass", strict=True)
    assert [HAM_CLASSES[r.label] for r in multiclass.records] == ["mel", "mel"]

    with pytest.raises(CommandError, match="exists already"):
        call_command("export_isic_csv", str(out))
    with pytest.raises(CommandError, match="No organization"):
        call_command("export_isic_csv", str(tmp_path / "other"), organization="nowhere")


def test_training_reads_an_isic_archive_download(tmp_path):
    """The Archive names images <isic_id>.jpg; rows without a benign/malignant call are bad rows."""
    (tmp_path / "ISIC_0000001.jpg").write_bytes(image_bytes(64, 64, seed=1))
    (tmp_path / "ISIC_0000002.jpg").write_bytes(image_bytes(64, 64, seed=2))
    (tmp_path / "ISIC_0000003.jpg").write_bytes(image_bytes(64, 64, seed=3))
    (tmp_path / "metadata.csv").write_text(
        "isic_id,age_approx,sex,anatom_site_general,diagnosis_1,diagnosis_2,diagnosis_3,lesion_id,patient_id\n"
        "ISIC_0000001,45,male,posterior torso,Benign,Benign melanocytic proliferations,Nevus,IL_1,IP_1\n"
        "ISIC_0000002,70,female,head/neck,Malignant,Malignant adnexal epithelial proliferations - Follicular,"
        "Basal cell carcinoma,IL_2,IP_2\n"
        "ISIC_0000003,30,female,,Indeterminate,Indeterminate melanocytic proliferations,,IL_3,IP_3\n"
    )
    dataset = load_dataset(tmp_path / "metadata.csv", task="binary")
    assert [(r.image_id, r.malignant, r.site, r.diagnosis) for r in dataset.records] == [
        ("ISIC_0000001", 0, "torso", "nv"),
        ("ISIC_0000002", 1, "head/neck", "bcc"),
    ]
    assert len(dataset.bad_rows) == 1 and "no benign/malignant" in dataset.bad_rows[0]["error"]
