"""The analysis task and the analysis sweeper, run in-process against the real ONNX Runtime (no worker
needed). The report sweeper is tests/cases/reports/test_tasks.py's."""

import shutil

import pytest
from django.utils import timezone

from cases import services as case_services
from cases.models import Case, CaseStatus, Prediction
from inference.registry import model_activate, model_register
from inference.services import cases_sweep_stuck
from inference.tasks import analyse_case
from tests.inference.members import replace_member
from tests.support.onnx_models import build_package
from tests.support.workers import queued


def analysed(case: Case) -> Case:
    analyse_case.apply(args=[case.pk], throw=False)  # eager retries re-raise Retry after running
    case.refresh_from_db()
    return case


def test_a_case_is_analysed_as_one_batch_and_awaits_review(make_case, active_model):
    case = analysed(make_case(3))
    assert case.status == CaseStatus.AWAITING_REVIEW
    predictions = list(Prediction.objects.filter(image__case=case).order_by("image__position"))
    assert len(predictions) == 3
    for prediction in predictions:
        assert prediction.model_version == active_model
        assert set(prediction.member_probabilities) == {"member0", "member1"}
        assert 0.0 <= prediction.probability <= 1.0
        assert prediction.latency_ms > 0
    assert case.risk == pytest.approx(max(p.probability for p in predictions))
    assert case.risk_band in ("low", "medium", "high")
    assert case.model_version == active_model


def test_running_the_task_twice_stores_one_result_set(make_case, active_model):
    case = make_case(2)
    analysed(case)
    first = {p.image_id: p.probability for p in Prediction.objects.filter(image__case=case)}
    assert analyse_case.apply(args=[case.pk]).get() == "skipped"
    case.refresh_from_db()
    assert case.status == CaseStatus.AWAITING_REVIEW
    assert case.analysis_attempts == 1
    assert {p.image_id: p.probability for p in Prediction.objects.filter(image__case=case)} == first


def test_a_case_claimed_by_a_lost_worker_is_run_again_without_duplicates(make_case, active_model):
    case = make_case(2)
    case_services.case_claim_for_analysis(case_id=case.pk)  # a worker claimed it, then died
    case = analysed(case)
    assert case.status == CaseStatus.AWAITING_REVIEW
    assert case.analysis_attempts == 2
    assert Prediction.objects.filter(image__case=case).count() == 2


def test_without_an_active_model_the_case_fails_with_a_reason(make_case, db):
    case = analysed(make_case(1))
    assert case.status == CaseStatus.FAILED
    assert "No AI model is active" in case.failure_reason


def test_a_corrupt_stored_image_fails_the_case_and_names_the_image(make_case, active_model):
    case = make_case(2)
    image = case.images.get(position=1)
    with open(image.file.path, "r+b") as handle:
        handle.seek(20)
        handle.write(b"\0" * 200)
        handle.truncate(400)
    case = analysed(case)
    assert case.status == CaseStatus.FAILED
    assert case.failure_reason.startswith("Image 2 of this case is damaged in storage")
    assert not Prediction.objects.filter(image__case=case).exists()


def test_a_missing_image_file_fails_the_case(make_case, active_model):
    case = make_case(1)
    shutil.os.remove(case.images.get().file.path)
    case = analysed(case)
    assert case.status == CaseStatus.FAILED
    assert "Image 1 of this case is missing from storage" in case.failure_reason


def test_a_model_that_raises_fails_the_case_with_the_member_named(make_case, db, tmp_path):
    folder = replace_member(build_package(tmp_path / "p"), 1, _build_batch_of_two_only)
    version = model_register(folder)  # its smoke test runs a batch of two, which this member accepts
    model_activate(name=version.name, version=version.version)
    case = analysed(make_case(1))
    assert case.status == CaseStatus.FAILED
    assert "failed on this case: member 'member1' failed to run" in case.failure_reason


def test_a_model_file_replaced_after_registration_is_refused_by_the_worker(make_case, active_model):
    from inference import runtime

    runtime.clear_cache()
    with open(f"{active_model.package_path}/member0.onnx", "ab") as handle:
        handle.write(b"\0")
    case = analysed(make_case(1))
    assert case.status == CaseStatus.FAILED
    assert "could not be loaded" in case.failure_reason and "checksum mismatch" in case.failure_reason


@pytest.fixture
def eager_retries_do_not_propagate():
    # Eager retries run at once, nested; keep each nested run from re-raising into the one that called it.
    conf = analyse_case.app.conf
    previous = conf.task_eager_propagates
    conf.task_eager_propagates = False
    yield
    conf.task_eager_propagates = previous


@pytest.mark.usefixtures("eager_retries_do_not_propagate")
def test_a_storage_error_is_retried_then_fails_the_case(make_case, active_model):
    case = make_case(1)
    path = case.images.get().file.path
    shutil.os.remove(path)
    shutil.os.mkdir(path)  # reading it raises IsADirectoryError: an OSError that is not "file not found"
    case = analysed(case)
    assert case.status == CaseStatus.FAILED
    assert "kept failing because of a temporary error" in case.failure_reason
    assert case.analysis_attempts == 6  # first try + 5 retries


def test_an_admin_retry_after_a_failure_analyses_the_case(make_case, db, platform_admin, tmp_path, queues):
    case = analysed(make_case(1))
    assert case.status == CaseStatus.FAILED
    version = model_register(build_package(tmp_path / "p"))
    model_activate(name=version.name, version=version.version)
    case_services.case_retry(actor=platform_admin, case=case)
    case = analysed(case)
    assert case.status == CaseStatus.AWAITING_REVIEW


def test_the_sweeper_re_enqueues_stuck_cases_and_leaves_fresh_ones(make_case, settings, queues, active_model):
    settings.TELEDER_STUCK_AFTER_S = 600
    stuck_submitted = make_case(1)
    stuck_analysing = make_case(1)
    case_services.case_claim_for_analysis(case_id=stuck_analysing.pk)
    fresh = make_case(1)
    long_ago = timezone.now() - timezone.timedelta(hours=1)
    Case.objects.filter(pk__in=[stuck_submitted.pk, stuck_analysing.pk]).update(updated_at=long_ago)
    result = cases_sweep_stuck()
    assert sorted(result.analyses_enqueued) == sorted([stuck_submitted.pk, stuck_analysing.pk])
    assert fresh.pk not in result.analyses_enqueued
    assert queued("inference") == 2
    # Published again just now: the next sweep leaves them alone.
    assert cases_sweep_stuck().analyses_enqueued == []


def test_the_sweeper_fails_a_case_that_keeps_killing_workers(make_case, settings, queues, active_model):
    settings.TELEDER_STUCK_AFTER_S = 600
    case = make_case(1)
    for _ in range(5):
        case_services.case_claim_for_analysis(case_id=case.pk)
    Case.objects.filter(pk=case.pk).update(updated_at=timezone.now() - timezone.timedelta(hours=1))
    assert cases_sweep_stuck().failed == [case.pk]
    case.refresh_from_db()
    assert case.status == CaseStatus.FAILED
    assert "did not finish in 5 attempts" in case.failure_reason


def _build_batch_of_two_only(path, image_size: int = 32):
    """A member whose graph reshapes its output to a fixed batch of two: it raises on any other batch."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from tests.support.onnx_models import METADATA_SIZE

    nodes = [
        helper.make_node("ReduceMean", ["image"], ["pooled"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("ReduceMean", ["metadata"], ["mpooled"], axes=[1], keepdims=0),
        helper.make_node("Add", ["pooled", "mpooled"], ["s"]),
        helper.make_node("Reshape", ["s", "shape"], ["s2"]),
        helper.make_node("Sigmoid", ["s2"], ["probability"]),
    ]
    graph = helper.make_graph(
        nodes,
        "batch2",
        [
            helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", image_size, image_size, 3]),
            helper.make_tensor_value_info("metadata", TensorProto.FLOAT, ["batch", METADATA_SIZE]),
        ],
        [helper.make_tensor_value_info("probability", TensorProto.FLOAT, [2, 1])],
        initializer=[numpy_helper.from_array(np.array([2, 1], dtype=np.int64), "shape")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def test_a_multiclass_model_stores_class_probabilities(make_case, db, tmp_path):
    import json

    from tests.inference.members import build_softmax_member, edit_manifest

    folder = build_package(tmp_path / "p", members=1)
    replace_member(folder, 0, build_softmax_member)
    members = json.loads((folder / "manifest.json").read_text())["members"]
    members[0]["output"] = "probabilities"
    edit_manifest(folder, task="multiclass", class_names=["mel", "nv", "bcc"], positive_class=["mel", "bcc"],
                  members=members)  # fmt: skip
    version = model_register(folder)
    model_activate(name=version.name, version=version.version)
    case = analysed(make_case(2))
    assert case.status == CaseStatus.AWAITING_REVIEW
    for prediction in Prediction.objects.filter(image__case=case):
        classes = prediction.class_probabilities
        assert set(classes) == {"mel", "nv", "bcc"}
        assert prediction.probability == pytest.approx(classes["mel"] + classes["bcc"], abs=1e-6)
