"""shadow_evaluate scores a candidate on reviewed cases beside the active model; activation must be earned."""

import io

import pytest
from django.core.management import CommandError, call_command

from cases.models import AuditEvent, Prediction
from inference.models import ShadowEvaluation
from inference.registry import model_register
from inference.selectors import active_model_version
from tests.support.onnx_models import build_package


@pytest.fixture
def candidate(registered_model, tmp_path):
    """A second real test package. With a threshold of 0.99 it flags (almost) nothing: sensitivity collapses."""
    return model_register(
        build_package(
            tmp_path / "candidate", version="2.0.0", threshold=0.99, bands={"medium": 0.99, "high": 0.995}
        )
    )


@pytest.fixture
def lenient_candidate(registered_model, tmp_path):
    """Same members as the active test package and threshold 0: it flags everything, sensitivity 1."""
    return model_register(
        build_package(
            tmp_path / "lenient", version="3.0.0", threshold=0.0, bands={"medium": 0.0, "high": 0.8}
        )
    )


def _shadow(version, *args) -> str:
    out = io.StringIO()
    call_command("shadow_evaluate", version.name, version.version, *args, stdout=out)
    return out.getvalue()


def test_shadow_evaluation_compares_without_touching_predictions(reviewed, candidate, registered_model):
    for i in range(4):
        reviewed(0.5, malignant=bool(i % 2))
    stored = list(Prediction.objects.values_list("pk", "probability", "model_version_id"))
    table = _shadow(candidate, "--days", "30")
    assert "4 reviewed cases of the last 30 days" in table
    assert str(registered_model) in table and str(candidate) in table
    assert list(Prediction.objects.values_list("pk", "probability", "model_version_id")) == stored
    evaluation = ShadowEvaluation.objects.get()
    assert evaluation.baseline == registered_model and evaluation.cases == 4
    assert evaluation.metrics["candidate"]["positives"] == 2
    assert AuditEvent.objects.filter(action="model.shadow_evaluate").count() == 1


def test_activation_refuses_a_candidate_that_misses_more_and_force_needs_a_reason(
    reviewed, candidate, registered_model
):
    for i in range(6):
        reviewed(0.5, malignant=bool(i % 2))
    _shadow(candidate)
    metrics = ShadowEvaluation.objects.get().metrics
    assert metrics["candidate"]["sensitivity"] < metrics["active"]["sensitivity"] - 0.02
    with pytest.raises(CommandError, match="missed more malignant lesions"):
        call_command("activate_model", candidate.name, candidate.version)
    assert active_model_version() == registered_model
    with pytest.raises(CommandError, match="needs a --reason"):
        call_command("activate_model", candidate.name, candidate.version, "--force")
    call_command(
        "activate_model",
        candidate.name,
        candidate.version,
        "--force",
        "--reason",
        "vendor recall of 1.0.0",
        stdout=io.StringIO(),
    )
    assert active_model_version() == candidate
    event = AuditEvent.objects.filter(action="model.activate").latest("pk")
    assert event.details["forced"] is True and event.details["reason"] == "vendor recall of 1.0.0"


def test_a_candidate_at_least_as_sensitive_is_activated(reviewed, lenient_candidate):
    for i in range(4):
        reviewed(0.5, malignant=bool(i % 2))
    _shadow(lenient_candidate)
    call_command("activate_model", lenient_candidate.name, lenient_candidate.version, stdout=io.StringIO())
    assert active_model_version() == lenient_candidate


def test_bad_requests_are_clear(candidate, registered_model):
    with pytest.raises(CommandError, match="No reviewed case"):
        _shadow(candidate)
    with pytest.raises(CommandError, match="is the active model"):
        _shadow(registered_model)
    with pytest.raises(CommandError, match="No model nope 1"):
        call_command("shadow_evaluate", "nope", "1")
