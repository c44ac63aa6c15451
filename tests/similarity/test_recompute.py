"""Activating another model recomputes the library's features in the background: chunked, resumable,
idempotent, with the progress on the model page and a note on the review page until it is done."""

import pytest
from django.urls import reverse

from similarity.models import Embedding
from similarity.tasks import recompute_embeddings
from tests.similarity.conftest import build_feature_package, register
from tests.support.workers import queued

RED, BLUE, GREEN = (200, 40, 40), (40, 40, 200), (40, 200, 40)


@pytest.fixture
def library(feature_model, submit, confirm, clinician, dermatologist):
    for seed, (rgb, diagnosis, malignant) in enumerate(
        [(RED, "mel", True), (BLUE, "nv", False), (GREEN, "bkl", False)]
    ):
        confirm(submit(clinician, rgb, seed=seed), dermatologist, diagnosis, malignant)
    return submit(clinician, RED, seed=10)  # awaiting review: its image gets features too


def test_a_new_model_version_recomputes_the_library_chunk_by_chunk(
    library, tmp_path, settings, client, platform_admin, dermatologist, queues
):
    settings.TELEDER_SIMILARITY_CHUNK = 3
    new = register(build_feature_package(tmp_path / "v2", version="2.0.0"))
    client.force_login(platform_admin)
    page = client.get(reverse("model_detail", args=[new.pk])).content.decode()
    assert "Features: 0 / 4 computed" in page and "Recomputing in the background" in page

    client.force_login(dermatologist)
    body = client.get(reverse("api:case-similar", args=[library.pk])).json()
    assert body["images"] == [] and "no features under the active model yet" in body["unavailable"]

    assert recompute_embeddings.apply(args=[new.pk]).get() == {"computed": 3, "remaining": 1, "skipped": 0}
    assert queued("inference") == 1  # the next chunk is published
    client.force_login(platform_admin)
    assert "Features: 3 / 4 computed" in client.get(reverse("model_detail", args=[new.pk])).content.decode()

    assert recompute_embeddings.apply(args=[new.pk]).get() == {"computed": 1, "remaining": 0, "skipped": 0}
    assert queued("inference") == 1  # nothing more was published
    page = client.get(reverse("model_detail", args=[new.pk])).content.decode()
    assert "Features: 4 / 4 computed" in page and "Recomputing in the background" not in page
    # Idempotent: a redelivered message computes nothing again.
    assert recompute_embeddings.apply(args=[new.pk]).get()["computed"] == 0
    assert Embedding.objects.filter(model_version=new).count() == 4

    client.force_login(dermatologist)
    lesions = client.get(reverse("api:case-similar", args=[library.pk])).json()["images"][0]["lesions"]
    assert [lesion["diagnosis"] for lesion in lesions][0] == "Melanoma"


def test_until_done_the_review_page_says_the_search_covers_what_is_computed(
    library, tmp_path, settings, client, dermatologist, queues
):
    settings.TELEDER_SIMILARITY_CHUNK = 1
    new = register(build_feature_package(tmp_path / "v2", version="2.0.0"))
    recompute_embeddings.apply(args=[new.pk])  # the first chunk: the query's own image
    client.force_login(dermatologist)
    page = client.get(reverse("review_case", args=[library.pk])).content.decode()
    assert "The library is being recomputed for the active model (1 / 4 images)" in page


def test_a_recompute_for_a_version_that_is_no_longer_active_does_nothing(library, feature_model, tmp_path):
    register(build_feature_package(tmp_path / "v2", version="2.0.0"))
    assert recompute_embeddings.apply(args=[feature_model.pk]).get() == {
        "skipped": "not the active model version"
    }
