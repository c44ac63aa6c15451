"""DICOM: export of case images as VL Photographic Image objects (read back with pydicom) and import of a
DICOM dermoscopy file through the upload validator, with refusals that store nothing."""

import datetime as dt
import hashlib
import io
import zipfile

import numpy as np
import pydicom
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image
from pydicom.uid import JPEGLosslessSV1

from cases.models import AuditEvent, LesionImage
from interop import dicom
from tests.support.images import image_bytes

pytestmark = pytest.mark.django_db
VL_PHOTO = "1.2.840.10008.5.1.4.1.1.77.1.4"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"


def read_zip(content: bytes) -> list[pydicom.Dataset]:
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        names = archive.namelist()
        assert names == sorted(names)
        return [pydicom.dcmread(io.BytesIO(archive.read(name))) for name in names]


def test_api_export_reads_back(client_for, clinician, reported_case):
    response = client_for(clinician).get(f"/api/v1/cases/{reported_case.pk}/dicom")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    assert f"teleder-case-{reported_case.pk}-dicom.zip" in response["Content-Disposition"]
    datasets = read_zip(response.content)
    images = list(reported_case.images.order_by("position"))
    assert len(datasets) == len(images) == 2
    patient = reported_case.lesion.patient
    for ds, image in zip(datasets, images, strict=True):
        assert ds.SOPClassUID == VL_PHOTO and ds.file_meta.MediaStorageSOPClassUID == VL_PHOTO
        assert ds.Modality == "XC"
        assert ds.PatientID == patient.reference and str(ds.PatientName) == ""
        assert ds.IssuerOfPatientID == patient.organization.slug
        assert ds.PatientSex == "F" and ds.PatientIdentityRemoved == "YES"
        assert ds.ProcedureCodeSequence[0].CodeValue == "446078004"
        region = ds.AnatomicRegionSequence[0]
        assert (region.CodeValue, region.CodingSchemeDesignator, region.CodeMeaning) == (
            "22943007",
            "SCT",
            "Trunk",
        )
        assert ds.ImageLaterality == "L"  # the lesion's label is "left shoulder"
        assert ds.InstanceNumber == image.position + 1
        assert (ds.Rows, ds.Columns) == (image.height, image.width)
        assert ds.file_meta.TransferSyntaxUID.name == "JPEG Baseline (Process 1)"
        with image.file.open("rb") as handle:
            stored = handle.read()
        frame = next(pydicom.encaps.generate_frames(ds.PixelData, number_of_frames=1))
        assert (
            frame[: len(stored)] == stored and len(frame) - len(stored) <= 1
        )  # the stored JPEG, even-padded
        assert ds.pixel_array.shape == (image.height, image.width, 3)
        assert "Changing lesion" not in str(ds)  # clinical notes stay out of the image files
    assert len({ds.StudyInstanceUID for ds in datasets}) == 1
    assert len({ds.SeriesInstanceUID for ds in datasets}) == 1
    assert len({ds.SOPInstanceUID for ds in datasets}) == 2
    assert AuditEvent.objects.filter(action="case.dicom_export", object_id=str(reported_case.pk)).exists()


def test_uids_are_stable_per_case(client_for, clinician, analysed_case, make_case):
    client = client_for(clinician)
    first, second = (
        read_zip(client.get(f"/api/v1/cases/{analysed_case.pk}/dicom").content) for _ in range(2)
    )
    assert [d.SOPInstanceUID for d in first] == [d.SOPInstanceUID for d in second]
    assert first[0].StudyInstanceUID == second[0].StudyInstanceUID
    other = read_zip(client.get(f"/api/v1/cases/{make_case(1).pk}/dicom").content)
    assert other[0].StudyInstanceUID != first[0].StudyInstanceUID


def test_png_images_export_as_uncompressed_rgb():
    content = image_bytes(40, 36, fmt="PNG", seed=3)
    now = dt.datetime(2026, 11, 30, 9, 0, tzinfo=dt.UTC)
    case = dicom.ExportCase(5, "north", now, "P-7", "male", 61, "oral/genital", "", "Casey Clinician")
    image = dicom.ExportImage(content, "image/png", 0, hashlib.sha256(content).hexdigest(), now)
    ds = pydicom.dcmread(io.BytesIO(dicom.dataset_bytes(dicom.image_dataset(case, image))))
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert ds.PhotometricInterpretation == "RGB" and ds.PatientAge == "061Y" and ds.PatientSex == "M"
    assert np.array_equal(ds.pixel_array, np.asarray(Image.open(io.BytesIO(content)).convert("RGB")))
    assert "AnatomicRegionSequence" not in ds  # oral/genital has no single region concept
    assert ds.ImageLaterality == "U"
    assert str(ds.ReferringPhysicianName) == "Clinician^Casey"


def test_web_download(client, clinician, other_clinician, password, analysed_case):
    client.login(username=clinician.username, password=password)
    response = client.get(f"/cases/{analysed_case.pk}/dicom.zip")
    assert response.status_code == 200 and len(read_zip(response.content)) == 2
    client.logout()
    client.login(username=other_clinician.username, password=password)
    assert client.get(f"/cases/{analysed_case.pk}/dicom.zip").status_code == 404


def test_export_other_organization_404(client_for, other_clinician, analysed_case):
    response = client_for(other_clinician).get(f"/api/v1/cases/{analysed_case.pk}/dicom")
    assert response.status_code == 404


# Import ---------------------------------------------------------------------------------------------------


def dicom_file(*, seed: int = 7, fmt: str = "PNG", **changes) -> bytes:
    content = image_bytes(64, 48, fmt=fmt, seed=seed)
    now = dt.datetime(2026, 11, 30, 9, 0, tzinfo=dt.UTC)
    case = dicom.ExportCase(99, "elsewhere", now, "MRN-123", "female", 40, "torso", "", "Dr Who")
    ds = dicom.image_dataset(
        case,
        dicom.ExportImage(
            content,
            "image/png" if fmt == "PNG" else "image/jpeg",
            0,
            hashlib.sha256(content).hexdigest(),
            now,
        ),
    )
    for keyword, value in changes.items():
        if keyword == "TransferSyntaxUID":
            ds.file_meta.TransferSyntaxUID = value
        else:
            setattr(ds, keyword, value)
    return dicom.dataset_bytes(ds)


def post(client, case, content: bytes, name: str = "image.dcm"):
    return client.post(
        f"/api/v1/cases/{case.pk}/dicom",
        {"file": SimpleUploadedFile(name, content, "application/dicom")},
        format="multipart",
    )


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_import_stores_reencoded_pixels_only(client_for, clinician, make_case, fmt):
    case = make_case(1, draft=True)  # images are added to drafts (and to cases returned for better images)
    response = post(client_for(clinician), case, dicom_file(fmt=fmt))
    assert response.status_code == 201, response.content
    (created,) = response.json()
    image = LesionImage.objects.get(pk=created["id"])
    assert image.case == case and image.position == 1 and (image.width, image.height) == (64, 48)
    with image.file.open("rb") as handle:
        stored = handle.read()
    assert stored.startswith(b"\x89PNG") and b"DICM" not in stored and b"MRN-123" not in stored
    expected = np.asarray(Image.open(io.BytesIO(image_bytes(64, 48, fmt=fmt, seed=7))).convert("RGB")).astype(
        int
    )
    difference = np.abs(np.asarray(Image.open(io.BytesIO(stored))).astype(int) - expected).max()
    assert difference <= (0 if fmt == "PNG" else 24)  # JPEG: decoders differ by a few levels
    assert AuditEvent.objects.filter(action="case.dicom_import", object_id=str(case.pk)).exists()


def ct_file() -> bytes:
    return dicom_file(SOPClassUID=CT_IMAGE, Modality="CT")


def truncated() -> bytes:
    return dicom_file()[:400]


def lossless_jpeg() -> bytes:
    return dicom_file(fmt="JPEG", TransferSyntaxUID=JPEGLosslessSV1)


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (ct_file, "modality CT"),
        (lossless_jpeg, "transfer syntax"),
        (truncated, "damaged"),
        (lambda: b"\x89PNG\r\n\x1a\n" + b"0" * 500, "not a DICOM file"),
        (lambda: b"", "empty"),
        (lambda: dicom_file(NumberOfFrames=2), "frames"),
        (lambda: dicom_file(Modality="XC", SOPClassUID="1.2.840.10008.5.1.4.1.1.7"), "only dermoscopy"),
    ],
)
def test_import_refusals_store_nothing(client_for, clinician, make_case, make, needle):
    case = make_case(1)
    before = sorted(LesionImage.objects.values_list("pk", flat=True))
    response = post(client_for(clinician), case, make())
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert needle in " ".join(error["fields"].get("file", [])) + error["message"]
    assert sorted(LesionImage.objects.values_list("pk", flat=True)) == before


def test_import_into_another_organization_is_404(client_for, other_clinician, make_case):
    case = make_case(1)
    assert post(client_for(other_clinician), case, dicom_file()).status_code == 404
    assert case.images.count() == 1


def test_import_after_analysis_is_refused(client_for, clinician, analysed_case):
    response = post(client_for(clinician), analysed_case, dicom_file())
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "illegal_transition"
    assert analysed_case.images.count() == 2


def test_case_page_links_the_exports(client, clinician, password, reported_case, make_case):
    client.login(username=clinician.username, password=password)
    page = client.get(f"/cases/{reported_case.pk}/").content.decode()
    assert f"/cases/{reported_case.pk}/dicom.zip" in page and f"/api/v1/cases/{reported_case.pk}/fhir" in page
    fresh = make_case(1)
    page = client.get(f"/cases/{fresh.pk}/").content.decode()
    assert f"/cases/{fresh.pk}/dicom.zip" in page and "/fhir" not in page


def test_only_the_submitter_imports(client_for, dermatologist, make_case):
    case = make_case(1)
    response = post(client_for(dermatologist), case, dicom_file())
    assert response.status_code == 403
    assert case.images.count() == 1


def test_platform_admin_exports_any_organization(client_for, platform_admin, reported_case):
    client = client_for(platform_admin)
    assert client.get(f"/api/v1/cases/{reported_case.pk}/fhir").status_code == 200
    assert client.get(f"/api/v1/cases/{reported_case.pk}/dicom").status_code == 200


def test_deflated_and_garbage_files_are_refused_unread(client_for, clinician, make_case):
    case = make_case(1)
    client = client_for(clinician)
    deflated = post(client, case, dicom_file(TransferSyntaxUID=pydicom.uid.DeflatedExplicitVRLittleEndian))
    assert deflated.status_code == 400 and "Deflated" in deflated.json()["error"]["message"]
    rng = np.random.default_rng(0)
    for _ in range(20):
        garbage = (
            b"\0" * 128
            + b"DICM"
            + rng.integers(0, 256, size=int(rng.integers(1, 4000)), dtype=np.uint8).tobytes()
        )
        assert post(client, case, garbage).status_code == 400
    valid = dicom_file()
    for cut in (150, 300, len(valid) // 2, len(valid) - 10):
        assert post(client, case, valid[:cut]).status_code == 400, cut
    assert case.images.count() == 1


def test_too_large_is_413(settings, client_for, clinician, make_case):
    case = make_case(1)
    settings.TELEDER_MAX_IMAGE_BYTES = 2000
    response = post(client_for(clinician), case, dicom_file())
    assert response.status_code == 413
    assert case.images.count() == 1
