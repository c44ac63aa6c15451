"""Hostile uploads (OWASP ASVS 5.0, 5.2) through the one submission service: each is refused with a message
a clinician can act on, and nothing is stored (no case, no image row, no file)."""

import io
import re
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from PIL import Image

from cases.models import Case, LesionImage
from cases.services import case_add_images, case_submit
from tests.security.hostile import CORPUS
from tests.support.images import image_bytes, upload


def _stored_files(settings) -> list[Path]:
    root = Path(settings.MEDIA_ROOT)
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def _refused(clinician, lesion, files: list[tuple[str, bytes]]) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        case_submit(
            actor=clinician,
            lesion=lesion,
            images=[upload(name, content=data) for name, data in files],
            analyse=False,
        )
    return caught.value.message_dict["images"]


@pytest.mark.django_db
@pytest.mark.parametrize("name", sorted(CORPUS))
def test_hostile_file_is_refused_with_a_clear_message_and_nothing_is_stored(
    name, clinician, lesion, settings
):
    factory, expected = CORPUS[name]

    messages = _refused(clinician, lesion, [(name, factory())])

    assert len(messages) == 1
    assert expected in messages[0]
    assert messages[0].startswith("Image 1 ")
    assert "Traceback" not in messages[0]
    assert Case.objects.count() == 0
    assert LesionImage.objects.count() == 0
    assert _stored_files(settings) == []


@pytest.mark.django_db
def test_one_hostile_file_refuses_the_whole_submission(clinician, lesion, settings):
    messages = _refused(
        clinician,
        lesion,
        [
            ("good.jpg", image_bytes(seed=1)),
            ("bad.jpg", CORPUS["svg-renamed.jpg"][0]()),
            ("ok.png", image_bytes(fmt="PNG")),
        ],
    )

    assert messages == ["Image 2 is not a JPEG or PNG image. (bad.jpg)"]
    assert Case.objects.count() == 0
    assert _stored_files(settings) == []


@pytest.mark.django_db
def test_hostile_file_added_to_an_existing_case_changes_nothing(make_case, clinician, settings):
    case = make_case(1, draft=True)
    before = sorted(_stored_files(settings))

    with pytest.raises(ValidationError) as caught:
        case_add_images(
            actor=clinician, case=case, images=[upload("x.jpg", CORPUS["jpeg-plus-html.jpg"][0]())]
        )

    assert "HTML or script" in caught.value.message_dict["images"][0]
    assert case.images.count() == 1
    assert sorted(_stored_files(settings)) == before


@pytest.mark.django_db
def test_file_over_the_per_file_limit_is_refused_before_decoding(clinician, lesion, settings):
    settings.TELEDER_MAX_IMAGE_BYTES = 1024 * 1024
    big = image_bytes(width=800, height=800, fmt="PNG", seed=9)
    assert len(big) > settings.TELEDER_MAX_IMAGE_BYTES

    messages = _refused(clinician, lesion, [("big.png", big)])

    assert messages == ["The file is larger than 1 MB. (big.png)"]
    assert _stored_files(settings) == []


@pytest.mark.django_db
def test_case_over_the_per_case_limit_is_refused(clinician, lesion, settings):
    settings.TELEDER_MAX_CASE_BYTES = 30_000
    files = [(f"{i}.png", image_bytes(width=80, height=80, fmt="PNG", seed=i)) for i in range(3)]

    messages = _refused(clinician, lesion, files)

    assert messages == ["The images of one case together exceed the size limit."]
    assert Case.objects.count() == 0 and _stored_files(settings) == []


@pytest.mark.django_db
def test_more_than_ten_images_are_refused(clinician, lesion, settings):
    messages = _refused(clinician, lesion, [(f"{i}.jpg", image_bytes(seed=i)) for i in range(11)])

    assert messages == ["A case has at most 10 images."]
    assert _stored_files(settings) == []


@pytest.mark.django_db
def test_daily_upload_quota_per_user(make_case, clinician, lesion, settings):
    settings.TELEDER_DAILY_UPLOAD_QUOTA = 3
    make_case(2)
    stored = sorted(_stored_files(settings))

    messages = _refused(clinician, lesion, [("a.jpg", image_bytes(seed=20)), ("b.jpg", image_bytes(seed=21))])

    assert messages == ["Daily upload limit reached (3 images per 24 hours)."]
    assert Case.objects.count() == 1
    assert sorted(_stored_files(settings)) == stored


@pytest.mark.django_db
@pytest.mark.parametrize(
    "name", ["../../../../etc/passwd.jpg", "<script>alert(1)</script>.jpg", "C:\\x\\..\\evil.jpg"]
)
def test_client_file_names_are_never_used_for_storage(name, clinician, lesion, settings):
    case = case_submit(
        actor=clinician, lesion=lesion, images=[upload(name, content=image_bytes())], analyse=False
    ).case

    stored = case.images.get()
    assert re.fullmatch(rf"cases/{case.pk}/[0-9a-f]{{32}}\.jpg", stored.file.name)
    files = _stored_files(settings)
    assert [p.relative_to(settings.MEDIA_ROOT).as_posix() for p in files] == [stored.file.name]


def _exif_with_gps() -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"
    exif[0x0131] = "ClinicCam 1.0"
    exif[0x8825] = {1: "N", 2: (51.0, 30.0, 12.5), 3: "W", 4: (0.0, 7.0, 39.0)}
    return exif.tobytes()


@pytest.mark.django_db
@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_valid_images_are_stored_re_encoded_without_exif_or_gps(fmt, clinician, lesion, settings):
    original = image_bytes(width=120, height=90, fmt=fmt, seed=7, exif=_exif_with_gps())
    assert Image.open(io.BytesIO(original)).getexif().get(0x010F) == "PhoneMaker"

    case = case_submit(
        actor=clinician, lesion=lesion, images=[upload(f"x.{fmt.lower()}", original)], analyse=False
    ).case

    stored = case.images.get()
    with stored.file.open("rb") as handle:
        data = handle.read()
    image = Image.open(io.BytesIO(data))
    assert image.format == fmt
    assert (image.width, image.height) == (120, 90)
    assert not image.getexif()
    assert not image.info.get("exif")
    for marker in (b"Exif", b"PhoneMaker", b"ClinicCam", b"GPS"):
        assert marker not in data
    assert data != original
    assert stored.size_bytes == len(data)
