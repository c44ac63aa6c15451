"""API test helpers: bearer-token clients made through the real login endpoint, analysed cases."""

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from cases.vocabulary import Role
from tests.support.analysis import record_probabilities
from tests.support.factories import PASSWORD, LesionFactory, ModelVersionFactory, PatientFactory, UserFactory


@pytest.fixture(autouse=True)
def _api_contract(monkeypatch, request):
    """Every answer under /api/v1/ that a test gets must match the published OpenAPI schema (status code,
    body, error code): tests/cases/api/contract.py. Violations fail the test at teardown."""
    from django.test import Client

    from tests.cases.api import contract

    violations: list[str] = []
    checked = [0]

    def wrap(original):
        def request_and_check(self, **kwargs):
            response = original(self, **kwargs)
            path = kwargs.get("PATH_INFO", "")
            if path.startswith(contract.API_PREFIX):
                checked[0] += 1
                violations.extend(contract.check(kwargs.get("REQUEST_METHOD", "GET"), path, response))
            return response

        return request_and_check

    monkeypatch.setattr(APIClient, "request", wrap(APIClient.request))
    monkeypatch.setattr(Client, "request", wrap(Client.request))
    yield
    assert not violations, "answers that do not match the OpenAPI schema:\n" + "\n".join(violations)


@pytest.fixture(autouse=True)
def _fresh_throttles():
    # Throttle counters live in the (process-wide) cache: each test starts with none.
    cache.clear()
    yield
    cache.clear()


def login(client: APIClient, username: str, password: str = PASSWORD) -> dict:
    response = client.post("/api/v1/auth/login/", {"username": username, "password": password}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


@pytest.fixture
def api_client():
    return APIClient()


@pytest.fixture
def client_for(db):
    """``client_for(user)``: an APIClient carrying a bearer token obtained by logging in as ``user``."""

    def make(user) -> APIClient:
        client = APIClient()
        tokens = login(client, user.username)
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['access']}")
        client.tokens = tokens
        return client

    return make


@pytest.fixture
def other_dermatologist(other_org):
    return UserFactory(username="otherderm", role=Role.DERMATOLOGIST, organizations=[other_org])


@pytest.fixture
def other_lesion(other_org, other_clinician):
    return LesionFactory(patient=PatientFactory(organization=other_org, created_by=other_clinician))


@pytest.fixture
def model_version(db):
    return ModelVersionFactory(version="1.0.0")


@pytest.fixture
def analyse(model_version):
    """Record an analysis result through the services the inference worker uses."""

    def run(case, probability: float = 0.5):
        probabilities = [probability] * case.images.count()
        return record_probabilities(case, model_version, probabilities, spread=0.05, latency_ms=3.0)

    return run
