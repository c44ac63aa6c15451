"""Schemathesis against the live OpenAPI schema, in process: no server error, and every response (errors
included) matches the documented status codes, content types and schemas. Bounded examples per endpoint."""

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from cases.api.authentication import issue_tokens
from teleder.wsgi import application

schema = schemathesis.openapi.from_wsgi("/api/schema/", application)
# Valid and invalid requests alike: bad input must get a documented 4xx, never a 500.
schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


@pytest.fixture
def _keep_test_connection():
    """Calls into the WSGI app end with request_finished, which closes the database connection (and so the
    test's transaction); Django's own test client disconnects that handler the same way."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def fuzz_world(_keep_test_connection, settings, clinician, dermatologist, make_case, analyse):
    """A small world for the generated requests to hit: a reviewed case, one awaiting review."""
    settings.TELEDER_API_THROTTLE_RATES = {
        "user": "100000/min",
        "uploads": "100000/min",
        "login": "100000/min",
    }
    analyse(make_case(), probability=0.9)
    make_case(2)
    return {"clinician": clinician, "dermatologist": dermatologist}


@pytest.mark.django_db(transaction=False)
@schema.parametrize()
@settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_schema(case, fuzz_world):
    # A fresh session per example: a generated logout must not starve the rest of the run.
    role = (
        "dermatologist"
        if case.path.startswith(("/api/v1/queue", "/api/v1/cases/{pk}/reviews"))
        else "clinician"
    )
    token = issue_tokens(fuzz_world[role]).access
    case.call_and_validate(headers={"Authorization": f"Bearer {token}"}, checks=CHECKS)
