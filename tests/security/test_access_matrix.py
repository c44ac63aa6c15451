"""Every URL of the site and the API x every role x another organization's objects.

The URL list is discovered from the URL resolver, so a new page or endpoint that takes an object id fails this
test until it is listed in ``OBJECT_PARAMS`` (and thereby checked). Expected answers:
- a user of another organization (clinician or dermatologist) gets 404 for every object-scoped URL, GET or POST;
- anonymous users are sent to the login page (pages) or get 401 (API), except public pages;
- nothing ever answers 500.
"""

import itertools
import uuid

import pytest
from django.core.cache import cache
from django.core.files.base import ContentFile
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient

from cases import services
from cases.models import Prediction
from cases.reports import signing
from cases.reports.services import report_generate
from cases.vocabulary import Role
from tests.support.factories import PASSWORD, UserFactory
from tests.support.images import image_bytes

# URL name -> the objects its parameters refer to ("case", "patient", "lesion", "image", "prediction", "report",
# "model").
OBJECT_PARAMS: dict[str, dict[str, str]] = {
    "patient_detail": {"patient_id": "patient"},
    "case_detail": {"case_id": "case"},
    "case_status": {"case_id": "case"},
    "case_image": {"case_id": "case", "image_id": "image"},
    "case_heatmap": {"case_id": "case", "prediction_id": "prediction"},
    "review_case": {"case_id": "case"},
    "review_correct": {"case_id": "case"},
    "review_request_images": {"case_id": "case"},
    "case_add_images": {"case_id": "case"},
    "case_submit": {"case_id": "case"},
    "case_retry": {"case_id": "case"},
    "model_detail": {"model_id": "model"},
    "model_activate": {"model_id": "model"},
    "report_download": {"uid": "report"},
    "api:patient-detail": {"pk": "patient"},
    "api:lesion-detail": {"pk": "lesion"},
    "api:case-detail": {"pk": "case"},
    "api:case-status": {"pk": "case"},
    "api:case-images": {"pk": "case"},
    "api:prediction-heatmap": {"pk": "case", "prediction": "prediction"},
    "api:case-review": {"pk": "case"},
    "api:case-correction": {"pk": "case"},
    "api:case-submit": {"pk": "case"},
    "api:case-image-request": {"pk": "case"},
    "api:report-detail": {"uid": "report"},
    "api:report-download": {"uid": "report"},
    "api:model-version-detail": {"pk": "model"},
    "api:model-version-activate": {"pk": "model"},
    "api:case-dicom": {"pk": "case"},
    "api:case-fhir": {"pk": "case"},
    "api:case-similar": {"pk": "case"},
    "reference_thumbnail": {"reference_id": "reference"},
    "case_dicom_zip": {"case_id": "case"},
}
# Model versions are platform-wide, not an organization's data: they are checked by role, not organization.
# Reference images (similarity) hold no patient data and belong to no organization: checked by role too.
PLATFORM_OBJECTS = {"model", "reference"}
PUBLIC = {
    "login",
    "password_reset",
    "password_reset_done",
    "password_reset_complete",
    "report_verify",
    "report_ca",
    "healthz",
    "readyz",
    "api:login",
    "api:refresh",
    "api:schema",
    "api:docs",
    "api:report-verify",
    "password_reset_confirm",
    # Not behind a login: restricted to internal addresses or a bearer token (tests/learning/test_metrics.py).
    "metrics",
}
SKIP_PREFIXES = ("admin/",)  # Django's admin has its own staff checks and is covered by Django's tests.


def _walk(patterns, prefix="", namespace=""):
    for entry in patterns:
        if isinstance(entry, URLResolver):
            ns = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            yield from _walk(entry.url_patterns, prefix + str(entry.pattern), ns)
        elif isinstance(entry, URLPattern):
            yield prefix + str(entry.pattern), (namespace + entry.name) if entry.name else None, entry


def discovered_urls() -> list[tuple[str, str, list[str]]]:
    urls = []
    for route, name, entry in _walk(get_resolver().url_patterns):
        if route.startswith(SKIP_PREFIXES) or name is None:
            continue
        urls.append((route, name, list(entry.pattern.converters)))
    return urls


def test_every_url_with_an_object_id_is_in_the_matrix():
    unlisted = [
        (route, name)
        for route, name, params in discovered_urls()
        if params and name not in OBJECT_PARAMS and name not in PUBLIC
    ]
    assert unlisted == [], "add these URLs to OBJECT_PARAMS so that their access rules are checked"


@pytest.fixture
def world(settings, tmp_path, make_case, dermatologist, registered_model, record_analysis):
    """Organization A's full chain: patient, lesion, reported case with an image, signed report."""
    settings.TELEDER_SIGNING_DIR = tmp_path / "signing"
    settings.TELEDER_SIGNING_PASSPHRASE = "matrix-test-passphrase"
    signing.ca_init()
    case = make_case(1)
    record_analysis(case, [0.9])
    prediction = Prediction.objects.get(image__case=case)
    prediction.heatmap.save("heatmap.png", ContentFile(image_bytes(fmt="PNG")))  # a stored overlay to refuse
    review = services.review_submit(
        actor=dermatologist, case=case, diagnosis="mel", malignant=True, management="biopsy"
    )
    report = report_generate(review_id=review.pk)
    return {
        "case": case.pk,
        "patient": case.lesion.patient_id,
        "lesion": case.lesion_id,
        "image": case.images.get().pk,
        "prediction": prediction.pk,
        "report": report.uid,
        "model": registered_model.pk,
        "reference": 1,
    }


def _path(route: str, name: str, world: dict) -> str:
    from django.urls import reverse

    kwargs = {param: world[obj] for param, obj in OBJECT_PARAMS.get(name, {}).items()}
    return reverse(name, kwargs=kwargs)


def _client(user, api: bool):
    if user is None:
        return APIClient() if api else None
    client = APIClient()
    if api:
        cache.clear()
        response = client.post(
            "/api/v1/auth/login/", {"username": user.username, "password": PASSWORD}, format="json"
        )
        assert response.status_code == 200, response.content
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {response.json()['access']}")
    else:
        client.force_login(user)
    return client


JSON_PAGES = {"health_workers"}  # JSON for monitoring tools: 401, not a redirect to a login page
ADMIN_ONLY = {"case_retry", "model_detail", "model_activate", "api:model-version-activate"}


@pytest.mark.django_db
def test_other_organizations_get_404_and_learn_nothing(world, other_org, client):
    """GET of another organization's object is a 404; any answer (404, or 405/403 for a method or role that is
    refused anyway) is exactly the answer for an id that does not exist, so ids reveal nothing."""
    outsiders = {
        "clinician of another organization": UserFactory(role=Role.CLINICIAN, organizations=[other_org]),
        "dermatologist of another organization": UserFactory(
            role=Role.DERMATOLOGIST, organizations=[other_org]
        ),
    }
    missing = {
        "case": 987654,
        "patient": 987654,
        "lesion": 987654,
        "image": 987654,
        "prediction": 987654,
        "report": uuid.UUID(int=1),
        "model": 987654,
        "reference": 987654,
    }
    tried = denied = 0
    failures = []
    statuses: dict[tuple[str, str], set[int]] = {}
    for (route, name, _params), (who, user), method in itertools.product(
        [u for u in discovered_urls() if u[1] in OBJECT_PARAMS], outsiders.items(), ("get", "post")
    ):
        if set(OBJECT_PARAMS[name].values()) <= PLATFORM_OBJECTS:
            continue
        api = name.startswith("api:")
        http = _client(user, api) if api else client
        if not api:
            client.force_login(user)
        response = getattr(http, method)(_path(route, name, world))
        baseline = getattr(http, method)(_path(route, name, missing))
        tried += 1
        statuses.setdefault((name, who), set()).add(response.status_code)
        if response.status_code != baseline.status_code:
            failures.append(
                f"{method.upper()} {name} as {who}: {response.status_code} but "
                f"{baseline.status_code} for a missing id"
            )
        elif response.status_code not in {403, 404, 405}:
            failures.append(f"{method.upper()} {name} as {who}: {response.status_code}")
        else:
            denied += 1
    # Each URL refuses the object itself (404) for at least one method; admin-only pages refuse the role (403).
    for (name, who), seen in statuses.items():
        if (403 if name in ADMIN_ONLY else 404) not in seen:
            failures.append(f"{name} as {who}: never refused the object, answers {sorted(seen)}")
    assert not failures, "\n".join(failures)
    assert tried == denied and tried >= 40


@pytest.mark.django_db
def test_anonymous_users_are_sent_to_login_or_get_401(world, client):
    failures = []
    for route, name, _params in discovered_urls():
        if name in PUBLIC or name == "logout":
            continue
        if _params and name not in OBJECT_PARAMS:
            continue
        api = name.startswith("api:")
        path = _path(route, name, world)
        response = (APIClient() if api else client).get(path)
        expected = {401} if api or name in JSON_PAGES else {302}
        if response.status_code not in expected:
            failures.append(f"GET {name}: {response.status_code}")
        elif response.status_code == 302 and "/accounts/login/" not in response["Location"]:
            failures.append(f"GET {name}: redirected to {response['Location']}")
    assert not failures, "\n".join(failures)


@pytest.mark.django_db
def test_role_boundaries_within_the_organization(world, clinician, dermatologist, platform_admin, client):
    """Same organization, wrong role: clinicians do not review or manage; dermatologists do not manage."""
    cases = [
        (clinician, "review_case", "get", {403, 404}),
        (clinician, "model_activate", "post", {403, 404}),
        (clinician, "case_retry", "post", {403, 404}),
        (clinician, "api:case-review", "post", {403}),
        (clinician, "api:model-version-activate", "post", {403}),
        (dermatologist, "model_activate", "post", {403, 404}),
        (dermatologist, "api:model-version-activate", "post", {403}),
        (dermatologist, "case_retry", "post", {403, 404}),
    ]
    failures = []
    for user, name, method, expected in cases:
        api = name.startswith("api:")
        http = _client(user, True) if api else client
        if not api:
            client.force_login(user)
        response = getattr(http, method)(_path("", name, world))
        if response.status_code not in expected:
            failures.append(f"{method.upper()} {name} as {user.role}: {response.status_code}")
    # Positive controls: the rightful users do get in.
    client.force_login(clinician)
    assert client.get(_path("", "case_detail", world)).status_code == 200
    assert client.get(_path("", "report_download", world)).status_code == 200
    client.force_login(dermatologist)
    assert client.get(_path("", "review_case", world)).status_code == 200
    client.force_login(platform_admin)
    assert client.get(_path("", "model_detail", world)).status_code == 200
    assert not failures, "\n".join(failures)


@pytest.mark.django_db
def test_every_page_and_endpoint_answers_each_role_without_a_server_error(
    world, clinician, dermatologist, platform_admin, client
):
    failures = []
    for user in (clinician, dermatologist, platform_admin):
        client.force_login(user)
        api_client = _client(user, True)
        for route, name, params in discovered_urls():
            if name in {"logout", "api:logout"} or (params and name not in OBJECT_PARAMS):
                continue
            api = name.startswith("api:")
            response = (api_client if api else client).get(_path(route, name, world))
            if response.status_code >= 500 and name != "readyz":  # 503 = not ready (no worker here)
                failures.append(f"GET {name} as {user.role}: {response.status_code}")
    assert not failures, "\n".join(failures)
