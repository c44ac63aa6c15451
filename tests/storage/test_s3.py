"""Images, reports and model packages on S3 through django-storages, against a real S3 API (moto server)."""

import hashlib
import io
import json

import pytest
from django.core.files.base import ContentFile
from PIL import Image

from cases.models import LesionImage
from cases.services import case_submit
from teleder.storage import ProtectedFileError, file_sha256, package_fetch, package_upload
from tests.support.images import image_bytes, upload
from tests.support.onnx_models import build_package

pytestmark = pytest.mark.django_db


def _exif_with_gps() -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "CameraMaker"
    exif[0x8825] = {1: "N", 2: (51.0, 30.0, 0.0)}
    return exif.tobytes()


def test_submitted_images_are_stored_on_s3_and_read_back_with_their_checksum(s3_storage, make_case):
    case = make_case(2)

    images = list(case.images.all())
    assert len(images) == 2
    for image in images:
        assert image.file.name.startswith(f"cases/{case.pk}/")
        assert s3_storage.exists(image.file.name)
        with s3_storage.open(image.file.name, "rb") as handle:
            data = handle.read()
        assert hashlib.sha256(data).hexdigest() == image.sha256 == file_sha256(image.file.name)
        assert len(data) == image.size_bytes
        # S3's own checksum of the object agrees with what was uploaded.
        etag = s3_storage.bucket.Object(image.file.name).e_tag.strip('"')
        assert etag == hashlib.md5(data).hexdigest()  # noqa: S324 - S3's ETag is an MD5


def test_images_on_s3_carry_no_exif(s3_storage, clinician, lesion):
    exif_jpeg = image_bytes(width=80, height=60, exif=_exif_with_gps())
    assert Image.open(io.BytesIO(exif_jpeg)).getexif()  # the upload does carry EXIF
    case = case_submit(actor=clinician, lesion=lesion, images=[upload(content=exif_jpeg)], analyse=False).case

    stored = case.images.get()
    with s3_storage.open(stored.file.name, "rb") as handle:
        data = handle.read()
    assert b"Exif" not in data and b"CameraMaker" not in data
    assert not Image.open(io.BytesIO(data)).getexif()


def test_a_name_clash_never_overwrites_an_existing_object(s3_storage):
    first = s3_storage.save("cases/1/a.jpg", ContentFile(b"first"))
    second = s3_storage.save("cases/1/a.jpg", ContentFile(b"second"))

    assert first == "cases/1/a.jpg"
    assert second != first
    with s3_storage.open(first, "rb") as handle:
        assert handle.read() == b"first"
    with s3_storage.open(second, "rb") as handle:
        assert handle.read() == b"second"


def test_stored_reports_cannot_be_deleted_or_overwritten(s3_storage):
    name = s3_storage.save("reports/7/report.pdf", ContentFile(b"%PDF-1.7 signed"))

    with pytest.raises(ProtectedFileError, match="cannot be deleted"):
        s3_storage.delete(name)
    with pytest.raises(ProtectedFileError, match="never overwritten"):
        s3_storage.save(name, ContentFile(b"%PDF-1.7 forged"))

    assert s3_storage.exists(name)
    with s3_storage.open(name, "rb") as handle:
        assert handle.read() == b"%PDF-1.7 signed"


def test_other_files_can_be_deleted(s3_storage):
    name = s3_storage.save("cases/9/tmp.jpg", ContentFile(b"x"))
    s3_storage.delete(name)
    assert not s3_storage.exists(name)


def test_image_rows_point_at_objects_that_exist(s3_storage, make_case):
    case = make_case(1)
    image = LesionImage.objects.get(case=case)
    with image.file.open("rb") as handle:
        assert hashlib.sha256(handle.read()).hexdigest() == image.sha256


def test_model_package_round_trips_through_s3(s3_storage, tmp_path):
    package = build_package(tmp_path / "pkg")
    manifest = json.loads((package / "manifest.json").read_text())

    names = package_upload(package, prefix=f"models/{manifest['name']}/{manifest['version']}")
    fetched = package_fetch(f"models/{manifest['name']}/{manifest['version']}", tmp_path / "fetched")

    assert len(names) == len([p for p in package.rglob("*") if p.is_file()])
    for member in manifest["members"]:
        data = (fetched / member["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == member["sha256"]
    assert json.loads((fetched / "manifest.json").read_text()) == manifest
    # Uploading the same package again is a no-op, not a second copy.
    assert package_upload(package, prefix=f"models/{manifest['name']}/{manifest['version']}") == names
