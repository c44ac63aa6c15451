"""The AI safety gate end to end: per-image assessment, not-assessed cases in the queue, the OOD arrays in a
package (fitted by ``python -m training gate``), their refusal when corrupt, and the API schema."""

import csv
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from PIL import Image

from cases import services as case_services
from cases.models import Case, CaseStatus, Prediction
from cases.selectors import review_queue
from inference.registry import manifest_of, model_register
from inference.runtime import Ensemble
from inference.tasks import analyse_case
from tests.support.images import image_bytes, upload
from tests.support.onnx_models import build_package
from training.__main__ import main as training_main
from training.ood_images import KINDS, generate


def flat(colour, size=(64, 48)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format="JPEG")
    return out.getvalue()


def submit(clinician, lesion, contents: list[bytes]) -> Case:
    images = [upload(f"img{i}.jpg", content=c) for i, c in enumerate(contents)]
    return case_services.case_submit(actor=clinician, lesion=lesion, images=images).case


def analysed(case: Case) -> Case:
    analyse_case.apply(args=[case.pk], throw=False)
    case.refresh_from_db()
    return case


def test_one_good_and_one_blank_image_risk_from_the_good_one(clinician, lesion, active_model, client):
    case = analysed(submit(clinician, lesion, [image_bytes(seed=3), flat((255, 255, 255))]))
    good, blank = Prediction.objects.filter(image__case=case).order_by("image__position")
    assert good.assessment == "assessed" and good.probability is not None
    assert blank.assessment == "not_assessed"
    assert blank.probability is None and blank.risk_band == ""
    assert "overexposed" in blank.reasons and "blurred" in blank.reasons
    assert blank.quality["clipped"]["passed"] is False
    assert case.status == CaseStatus.AWAITING_REVIEW
    assert case.risk == pytest.approx(good.probability)
    assert case.ai_assessment == "partial"
    # The clinician sees at once which image failed, why, and is invited to resubmit.
    client.force_login(clinician)
    page = client.get(reverse("case_detail", args=[case.pk])).content.decode()
    assert "AI could not assess" in page and "overexposed" in page and "new, sharp, well-lit" in page
    assert "only from the images it assessed" in page
    api = client.get(f"/api/v1/cases/{case.pk}/").json()
    assessments = [img["predictions"][0]["assessment"] for img in api["images"]]
    assert [a["status"] for a in assessments] == ["assessed", "not_assessed"]
    assert "overexposed" in assessments[1]["reasons"] and assessments[1]["explanation"]
    assert api["images"][1]["predictions"][0]["probability"] is None
    assert api["ai_assessment"] == "partial"


def test_an_all_blank_case_reaches_the_queue_as_not_assessed(
    clinician, lesion, active_model, dermatologist, client
):
    low = analysed(submit(clinician, lesion, [image_bytes(seed=5)]))
    blank = analysed(submit(clinician, lesion, [flat((255, 255, 255)), flat((0, 0, 0))]))
    assert blank.status == CaseStatus.AWAITING_REVIEW
    assert blank.risk is None and blank.risk_band == ""  # never a silent "low"
    assert blank.ai_assessment == "not_assessed"
    reasons = [p.reasons for p in Prediction.objects.filter(image__case=blank).order_by("image__position")]
    assert "overexposed" in reasons[0] and "too_dark" in reasons[1]
    queue = list(review_queue(dermatologist))
    assert queue.index(blank) < queue.index(low)  # the AI gives it no priority: a person must
    client.force_login(dermatologist)
    page = client.get(reverse("review_queue")).content.decode()
    assert "AI could not assess" in page
    review_page = client.get(reverse("review_case", args=[blank.pk])).content.decode()
    assert "AI could not assess" in review_page and "too dark" in review_page


def test_a_case_the_ai_could_not_assess_can_be_reviewed(clinician, lesion, active_model, dermatologist):
    """Regression (found by the container smoke test): the review of a not-assessed case has no AI flag and
    no agreement, and must be signed all the same."""
    from rest_framework.test import APIClient

    blank = analysed(submit(clinician, lesion, [flat((255, 255, 255))]))
    api = APIClient()
    api.force_authenticate(dermatologist)
    response = api.post(
        f"/api/v1/cases/{blank.pk}/reviews/",
        {"diagnosis": "mel", "malignant": True, "management": "biopsy", "notes": "Excise."},
        format="json",
    )
    assert response.status_code == 201, response.content
    review = blank.reviews.get()
    assert review.ai_flagged is None and review.agrees_with_ai is None
    blank.refresh_from_db()
    assert blank.status == CaseStatus.REVIEWED


# OOD arrays in a package ------------------------------------------------------------------------------


def _lesion_like(seed: int) -> Image.Image:
    return Image.open(io.BytesIO(image_bytes(width=64, height=64, seed=seed)))


@pytest.fixture
def gated_package(tmp_path):
    """A test package with an OOD gate fitted by ``python -m training gate`` on generated "lesions"."""
    folder = build_package(tmp_path / "gated", version="2.0.0")
    images = tmp_path / "data" / "images"
    images.mkdir(parents=True)
    with open(tmp_path / "data" / "labels.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            [
                "image_id",
                "filename",
                "diagnosis",
                "malignant",
                "age",
                "sex",
                "anatom_site",
                "lesion_id",
                "source",
            ]
        )
        for i in range(160):
            _lesion_like(i).save(images / f"L{i}.png")
            writer.writerow(
                [f"L{i}", f"images/L{i}.png", "nv", i % 2, 50, "female", "torso", "", "generated"]
            )
    code = training_main(
        [
            "gate",
            "--package",
            str(folder),
            "--data",
            str(tmp_path / "data" / "labels.csv"),
            "--tensor",
            "pooled2",
            "--dims",
            "1",
        ]
    )
    assert code == 0
    return folder


def test_the_gate_command_writes_arrays_listed_with_their_sha256(gated_package, db):
    manifest = json.loads((gated_package / "manifest.json").read_text())
    ood = manifest["gate"]["ood"]
    assert ood["method"] == "pca_residual" and ood["threshold"] > 0
    for member in manifest["members"]:
        assert member["outputs"]["features"] == "pooled2"
        for item in ood["arrays"][member["name"]].values():
            assert (gated_package / item["file"]).is_file() and len(item["sha256"]) == 64
    version = model_register(gated_package)
    ensemble = Ensemble(Path(version.package_path), manifest_of(version))
    assert ensemble.ood is not None
    lesions = [_lesion_like(1000 + i) for i in range(6)]
    others = [generate(kind, 1) for kind in ("flat", "text")] + [Image.new("RGB", (64, 64), (255, 255, 255))]
    outcomes, _ = ensemble.run(ensemble.prepare(lesions + others, [(None, None, None)] * 9))
    scores = [o.ood_score for o in outcomes]
    assert max(scores[:6]) < min(scores[6:])  # the tiny test model's only feature is the mean pixel
    # One session per member (members that cannot be fused) exposes the same features: the same scores.
    separate = Ensemble(Path(version.package_path), manifest_of(version), fuse=False)
    outcomes, _ = separate.run(separate.prepare(lesions + others, [(None, None, None)] * 9))
    assert [o.ood_score for o in outcomes] == pytest.approx(scores, rel=1e-4)


def test_a_corrupt_gate_array_is_refused_at_registration_naming_the_file(gated_package, db):
    manifest = json.loads((gated_package / "manifest.json").read_text())
    file = manifest["gate"]["ood"]["arrays"]["member0"]["components"]["file"]
    (gated_package / file).write_bytes(b"not an array")
    with pytest.raises(ValidationError, match=file):
        model_register(gated_package)


def test_a_gate_array_of_the_wrong_shape_is_refused_naming_the_file(gated_package, db):
    manifest = json.loads((gated_package / "manifest.json").read_text())
    item = manifest["gate"]["ood"]["arrays"]["member1"]["components"]
    np.save(gated_package / item["file"], np.zeros((3, 3), dtype=np.float32))
    from inference.package import sha256_file

    item["sha256"] = sha256_file(gated_package / item["file"])
    (gated_package / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValidationError, match=item["file"]):
        model_register(gated_package)


def test_a_member_added_after_the_gate_was_fitted_serves_outside_the_gate(gated_package, db, tmp_path):
    """A package grown by a member (``package --from-package --member``) keeps the gate fitted on the others:
    the new member's probability counts, the gate's score is the gated members' alone."""
    before = model_register(gated_package)
    images = [_lesion_like(2000 + i) for i in range(3)] + [generate("text", 1)]
    gated = Ensemble(Path(before.package_path), manifest_of(before))
    expected, _ = gated.run(gated.prepare(images, [(None, None, None)] * 4))
    manifest = json.loads((gated_package / "manifest.json").read_text())
    arrays = manifest["gate"]["ood"]["arrays"]
    member1 = arrays.pop("member1")
    manifest["version"] = "2.0.1"
    (gated_package / "manifest.json").write_text(json.dumps(manifest))
    partial = model_register(gated_package)
    ensemble = Ensemble(Path(partial.package_path), manifest_of(partial))
    assert list(ensemble.ood.members) == ["member0"]
    outcomes, _ = ensemble.run(ensemble.prepare(images, [(None, None, None)] * 4))
    assert [o.probability for o in outcomes] == pytest.approx([o.probability for o in expected])
    member0_only = [o.ood_score for o in outcomes]
    assert max(member0_only[:3]) < member0_only[3]
    arrays["member1"], arrays["stranger"] = member1, member1
    manifest["version"] = "2.0.2"
    (gated_package / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValidationError, match="not a member: stranger"):
        model_register(gated_package)


def test_a_package_without_gate_arrays_serves_with_the_gate_off(active_model, platform_admin, client):
    client.force_login(platform_admin)
    page = client.get(reverse("model_detail", args=[active_model.pk])).content.decode()
    assert "AI gate not available" in page


def test_the_api_schema_documents_the_assessment_and_its_reasons(client, db):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").content.decode()
    for reason in (
        "blurred",
        "too_dark",
        "overexposed",
        "too_small",
        "not_dermoscopy",
        "extreme_aspect_ratio",
    ):
        assert reason in schema
    assert "not_assessed" in schema and "AI could not assess" in schema


# The bundled model on real dermoscopy (skipped where the shared data set is not there) ------------------

DERM = Path(
    os.environ.get("TELEDER_DERM_DATA", Path(__file__).resolve().parents[3] / "shared" / "data" / "derm")
)
BUNDLED = Path(__file__).resolve().parents[2] / "models" / "default"


@pytest.mark.skipif(not (DERM / "labels.csv").is_file(), reason="the shared dermoscopy set is not available")
def test_bundled_ood_score_is_higher_for_non_dermoscopy_than_for_real_dermoscopy():
    from inference.package import read_manifest

    manifest, _ = read_manifest(BUNDLED)
    ensemble = Ensemble(BUNDLED, manifest)
    if ensemble.ood is None:
        pytest.skip("the bundled package has no OOD gate")
    split = json.loads((BUNDLED / "training" / "split.json").read_text())
    val = set(split["val"][:: max(1, len(split["val"]) // 8)][:8])  # a fixed sample of held-out images
    with open(DERM / "labels.csv") as handle:
        rows = [r for r in csv.DictReader(handle) if r["image_id"] in val]
    real = [Image.open(DERM / r["filename"]).convert("RGB") for r in rows]
    fake = [generate(kind, 3) for kind in KINDS]
    outcomes, _ = ensemble.run(ensemble.prepare(real + fake, [(None, None, None)] * (len(real) + len(fake))))
    scores = np.array([o.ood_score for o in outcomes])
    real_scores, fake_scores = scores[: len(real)], scores[len(real) :]
    assert np.median(fake_scores) > np.percentile(real_scores, 90)
    assert np.mean(fake_scores > manifest.raw["gate"]["ood"]["threshold"]) >= 0.8
