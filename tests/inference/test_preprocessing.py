"""Training-serving skew: an image and its metadata give the same tensors whether they come from the data
set on disk (the training path) or through an upload, storage and the worker (the serving path)."""

import io
from pathlib import Path

import numpy as np
import pytest
from django.utils import timezone
from PIL import Image

from cases import services
from cases.models import Prediction
from inference.preprocessing import (
    ImageSpec,
    MetadataSpec,
    PreprocessingError,
    image_tensor,
    metadata_vector,
    shades_of_gray,
)
from inference.registry import ensemble_for
from inference.runtime import BatchInputs
from inference.tasks import analyse_case
from tests.support.factories import LesionFactory, PatientFactory
from tests.support.images import image_bytes, upload

DERM = Path("/work/shared/data/derm/images")


def submit(clinician, lesion, data: bytes, name: str, content_type: str):
    return services.case_submit(
        actor=clinician, lesion=lesion, images=[upload(name, data, content_type)], analyse=False
    ).case


@pytest.fixture
def lesion_60_female_torso(org, clinician):
    patient = PatientFactory(
        organization=org, created_by=clinician, sex="female", year_of_birth=timezone.now().year - 60
    )
    return LesionFactory(patient=patient, site="torso")


def test_a_png_gives_the_same_tensor_and_probability_through_training_and_serving(
    clinician, lesion_60_female_torso, active_model, tmp_path
):
    on_disk = tmp_path / "lesion.png"
    on_disk.write_bytes(image_bytes(width=120, height=90, fmt="PNG", seed=7))
    case = submit(clinician, lesion_60_female_torso, on_disk.read_bytes(), "lesion.png", "image/png")
    ensemble = ensemble_for(active_model)
    manifest = ensemble.manifest

    # Training path: the file from disk, metadata as the data set's CSV writes it.
    training = BatchInputs(
        images={m.image: image_tensor(on_disk, m.image)[None] for m in manifest.members},
        metadata=metadata_vector("60", "female", "torso", manifest.metadata)[None],
    )
    # Serving path: the stored upload and the case's recorded metadata, as the worker reads them.
    stored = case.images.get().file.read()
    serving = ensemble.prepare(
        [stored], [(case.age_at_submission, case.sex_at_submission, case.site_at_submission)]
    )
    for spec, batch in training.images.items():
        assert np.array_equal(serving.images[spec], batch)
    assert np.array_equal(serving.metadata, training.metadata)

    analyse_case.apply(args=[case.pk])
    (expected,), _ = ensemble.run(training)
    assert Prediction.objects.get(image__case=case).probability == pytest.approx(
        expected.probability, abs=1e-7
    )


def test_exif_orientation_is_applied_the_same_way_on_both_paths(clinician, lesion, tmp_path):
    pixels = np.zeros((40, 80, 3), dtype=np.uint8)
    pixels[:, :40] = 255  # left half white: a rotation moves it
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=100, exif=exif.tobytes())
    on_disk = tmp_path / "rotated.jpg"
    on_disk.write_bytes(buffer.getvalue())
    case = submit(clinician, lesion, on_disk.read_bytes(), "rotated.jpg", "image/jpeg")
    spec = ImageSpec(size=32, resize="squash", normalisation="unit")
    training = image_tensor(on_disk, spec)
    serving = image_tensor(case.images.get().file.read(), spec)
    assert training[:, :, 0].mean(axis=1)[8] > 0.9 and training[:, :, 0].mean(axis=1)[23] < 0.1  # top white
    # The upload re-encodes JPEGs at quality 95, so pixels differ by rounding only.
    assert np.abs(training - serving).max() < 0.05


def test_shades_of_gray_takes_out_a_colour_cast_and_leaves_a_grey_image_alone():
    rng = np.random.default_rng(0)
    scene = rng.integers(40, 200, (64, 64, 3)).astype(np.uint8)
    tinted = np.clip(scene * np.array([1.2, 1.0, 0.8]), 0, 255).astype(
        np.uint8
    )  # warm light, same brightness
    corrected = ImageSpec(64, "squash", "unit", "shades_of_gray")
    as_taken = ImageSpec(64, "squash", "unit")
    reference = image_tensor(Image.fromarray(scene), corrected)
    cast_left = np.abs(image_tensor(Image.fromarray(tinted), as_taken) - reference).mean()
    cast_corrected = np.abs(image_tensor(Image.fromarray(tinted), corrected) - reference).mean()
    assert cast_corrected < cast_left / 5
    norms = np.mean(image_tensor(Image.fromarray(tinted), corrected) ** 6, axis=(0, 1)) ** (1 / 6)
    assert norms.max() - norms.min() < 0.01  # every channel has the same 6-norm afterwards
    grey = np.full((16, 16, 3), 120, np.uint8)
    assert np.array_equal(shades_of_gray(grey), grey)
    assert ImageSpec.from_dict(corrected.to_dict()) == corrected
    assert "colour" not in as_taken.to_dict()  # manifests without colour correction stay as they were


@pytest.mark.skipif(not DERM.is_dir(), reason="the shared dermoscopy data set is not on this machine")
def test_a_real_dermoscopic_jpeg_differs_only_by_the_uploads_re_encoding(clinician, lesion):
    path = sorted(DERM.glob("*.jpg"))[0]
    case = submit(clinician, lesion, path.read_bytes(), path.name, "image/jpeg")
    specs = (
        ImageSpec(224, "squash", "lite"),
        ImageSpec(240, "center_crop", "imagenet"),
        ImageSpec(224, "squash", "lite", "shades_of_gray"),
    )
    for spec in specs:
        training = image_tensor(path, spec)
        serving = image_tensor(case.images.get().file.read(), spec)
        assert training.shape == serving.shape == (spec.size, spec.size, 3)
        assert np.abs(training - serving).mean() < 0.02 * np.abs(training).mean() + 0.01


@pytest.mark.parametrize(
    ("age", "sex", "site", "hot"),
    [
        (None, "unknown", "unknown", [1, 4, 11]),
        ("", "", "nan", [1, 4, 11]),
        (45, "male", "head/neck", [0, 2, 5]),
        ("45", " Female ", "palms/soles", [0, 3, 9]),
    ],
)
def test_metadata_marks_unknown_values_explicitly(age, sex, site, hot):
    vector = metadata_vector(age, sex, site, MetadataSpec())
    assert list(np.flatnonzero(vector)) == hot
    if age not in (None, ""):
        assert vector[0] == pytest.approx(0.45)


@pytest.mark.parametrize(
    ("age", "sex", "site", "message"),
    [
        (130, "male", "torso", "outside 0..120"),
        (40, "other", "torso", "sex 'other'"),
        (40, "male", "back", "site"),
    ],
)
def test_impossible_metadata_is_an_error_not_a_silent_default(age, sex, site, message):
    with pytest.raises(PreprocessingError, match=message):
        metadata_vector(age, sex, site)
