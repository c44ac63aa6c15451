"""The ONNX Runtime ensemble on real (small) ONNX models."""

import json

import numpy as np
import pytest
from PIL import Image

from inference import runtime
from inference.package import PackageError, read_manifest, sha256_file
from inference.preprocessing import hflip, image_tensor, metadata_vector
from inference.runtime import Ensemble, ModelError, RuntimeConfig, select_providers, smoke_test
from tests.inference.members import (
    build_corner_member,
    build_scaled_age_member,
    build_softmax_member,
    build_unnormalised_member,
    edit_manifest,
    replace_member,
)
from tests.support.images import image_bytes
from tests.support.onnx_models import build_package

META = (56, "female", "torso")


def load(folder, **config) -> Ensemble:
    manifest, _ = read_manifest(folder)
    return Ensemble(folder, manifest, RuntimeConfig(**config))


def test_each_image_gets_the_weighted_mean_of_its_members(tmp_path):
    folder = build_package(tmp_path / "p")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["members"][0]["weight"] = 1.0
    manifest["members"][1]["weight"] = 3.0
    edit_manifest(folder, members=manifest["members"])
    ensemble = load(folder)
    outcome = ensemble.predict([image_bytes(seed=1), image_bytes(seed=2)], [META, (None, None, None)])
    assert len(outcome.images) == 2
    for image in outcome.images:
        members = image.member_probabilities
        assert set(members) == {"member0", "member1"}
        assert image.probability == pytest.approx(0.25 * members["member0"] + 0.75 * members["member1"])
        assert 0.0 <= image.probability <= 1.0
    assert outcome.model_ms > 0


def test_a_batch_gives_the_same_answers_as_images_one_by_one(package):
    ensemble = load(package)
    images = [image_bytes(seed=s) for s in range(3)]
    batch = ensemble.predict(images, [META] * 3)
    for image, expected in zip(images, batch.images, strict=True):
        (alone,) = ensemble.predict([image], [META]).images
        assert alone.probability == pytest.approx(expected.probability, abs=1e-6)


def test_flip_tta_averages_the_image_and_its_mirror(tmp_path):
    folder = build_package(tmp_path / "p", members=1, tta=True)
    replace_member(folder, 0, build_corner_member)
    ensemble = load(folder)
    pixels = np.zeros((32, 32, 3), dtype=np.uint8)
    pixels[0, 0, 0] = 255  # top-left red; its mirror image has black there
    outcome = ensemble.predict([Image.fromarray(pixels)], [META])
    assert outcome.images[0].probability == pytest.approx(0.5, abs=1e-6)
    edit_manifest(folder, tta={"hflip": False})
    assert load(folder).predict([Image.fromarray(pixels)], [META]).images[0].probability == pytest.approx(1.0)


def test_hflip_mirrors_width_only():
    batch = np.arange(2 * 2 * 3 * 3, dtype=np.float32).reshape(2, 2, 3, 3)
    assert np.array_equal(hflip(batch)[:, :, 0, :], batch[:, :, 2, :])


def test_members_run_as_one_fused_session_with_the_same_answers(tmp_path):
    folder = build_package(tmp_path / "p", members=3, tta=True)
    fused = load(folder)
    separate = Ensemble(folder, read_manifest(folder)[0], RuntimeConfig(), fuse=False)
    assert fused.fused is not None and fused.sessions == []
    assert separate.fused is None and len(separate.sessions) == 3
    images, meta = [image_bytes(seed=s) for s in range(4)], [META, (None, None, None), META, META]
    for a, b in zip(fused.predict(images, meta).images, separate.predict(images, meta).images, strict=True):
        assert a.probability == pytest.approx(b.probability, abs=1e-6)
        assert a.member_probabilities == pytest.approx(b.member_probabilities, abs=1e-6)


def test_a_colour_corrected_member_gets_its_own_tensor_in_the_fused_graph(tmp_path):
    folder = build_package(tmp_path / "p", members=2)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["members"][1]["preprocessing"]["colour"] = "shades_of_gray"
    edit_manifest(folder, members=manifest["members"])
    fused = load(folder)
    separate = Ensemble(folder, read_manifest(folder)[0], RuntimeConfig(), fuse=False)
    plain, corrected = (m.image for m in fused.manifest.members)
    assert corrected.colour == "shades_of_gray" and fused.fused is not None
    data = image_bytes(seed=5)
    inputs = fused.prepare([data], [META])
    assert np.array_equal(inputs.images[corrected][0], image_tensor(data, corrected))
    assert not np.array_equal(inputs.images[corrected][0], inputs.images[plain][0])
    a, b = fused.predict([data], [META]).images[0], separate.predict([data], [META]).images[0]
    assert a.member_probabilities == pytest.approx(b.member_probabilities, abs=1e-6)


def test_only_a_lone_session_may_spin(tmp_path):
    # One session per process (a fused ensemble, or a single member) keeps ORT's spinning threads; several
    # sessions in one process must not spin (measured: 2-3x slower on 2 cores), nor may their pools be larger
    # than configured.
    entry = "session.intra_op.allow_spinning"
    fused = load(build_package(tmp_path / "two", members=2))
    with pytest.raises(RuntimeError, match="does not have configuration"):
        fused.fused.get_session_options().get_session_config_entry(entry)
    manifest = read_manifest(tmp_path / "two")[0]
    separate = Ensemble(tmp_path / "two", manifest, RuntimeConfig(intra_op_threads=1), fuse=False)
    assert separate.sessions[0].get_session_options().get_session_config_entry(entry) == "0"
    assert separate.sessions[0].get_session_options().intra_op_num_threads == 1
    one = load(build_package(tmp_path / "one", members=1))
    assert one.fused is None
    with pytest.raises(RuntimeError, match="does not have configuration"):
        one.sessions[0].get_session_options().get_session_config_entry(entry)


def test_members_that_cannot_share_a_graph_run_as_separate_sessions(tmp_path):
    import onnx

    folder = build_package(tmp_path / "p", members=2)
    model = onnx.load(folder / "member1.onnx")
    model.ir_version -= 1  # another IR version than member0's: no fused graph
    onnx.save(model, folder / "member1.onnx")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["members"][1]["sha256"] = sha256_file(folder / "member1.onnx")
    edit_manifest(folder, members=manifest["members"])
    ensemble = load(folder)
    assert ensemble.fused is None and len(ensemble.sessions) == 2
    assert 0.0 <= ensemble.predict([image_bytes(seed=1)], [META]).images[0].probability <= 1.0


def test_sessions_do_not_plan_memory_per_input_shape(package):
    # Every case size is a new batch shape; ORT's per-shape memory-pattern planning made the second case of a
    # new size 2-4x slower than steady state (docs/inference.md), so it is off for every session.
    ensemble = load(package)
    separate = Ensemble(package, read_manifest(package)[0], RuntimeConfig(), fuse=False)
    sessions = [ensemble.fused, *separate.sessions]
    assert all(not s.get_session_options().enable_mem_pattern for s in sessions)


def test_warm_up_runs_a_synthetic_batch_and_leaves_answers_unchanged(package):
    ensemble = load(package)
    before = ensemble.predict([image_bytes(seed=4)], [META]).images[0].probability
    assert ensemble.warm_up(10) > 0
    assert ensemble.predict([image_bytes(seed=4)], [META]).images[0].probability == pytest.approx(before)


def test_providers_fall_back_to_the_cpu():
    assert select_providers(["CUDAExecutionProvider", "CPUExecutionProvider"])[-1] == "CPUExecutionProvider"
    assert select_providers(["NoSuchExecutionProvider"]) == ["CPUExecutionProvider"]


def test_the_ensemble_runs_on_an_available_provider(package):
    ensemble = load(package)
    assert ensemble.providers[-1] == "CPUExecutionProvider"


def test_a_member_returning_logits_is_a_model_error(tmp_path):
    folder = replace_member(build_package(tmp_path / "p"), 1, build_unnormalised_member)
    ensemble = load(folder)
    with pytest.raises(ModelError, match="member 'member1' returned values outside \\[0, 1\\]"):
        ensemble.predict([image_bytes()], [META])


def test_the_smoke_test_refuses_a_member_whose_output_is_not_a_probability(tmp_path):
    folder = replace_member(build_package(tmp_path / "p"), 0, build_unnormalised_member)
    manifest, _ = read_manifest(folder)
    with pytest.raises(PackageError, match="smoke test failed: member 'member0'"):
        smoke_test(folder, manifest)


def test_an_output_that_is_right_for_some_patients_only_fails_at_run_time(tmp_path):
    folder = replace_member(build_package(tmp_path / "p"), 0, build_scaled_age_member, factor=1.5)
    manifest, _ = read_manifest(folder)
    ensemble = smoke_test(folder, manifest)  # age 50 and unknown age both stay within [0, 1]
    with pytest.raises(ModelError, match="outside \\[0, 1\\]"):
        ensemble.predict([image_bytes()], [(90, "male", "torso")])


def test_an_input_name_the_graph_does_not_have_is_refused(tmp_path):
    folder = build_package(tmp_path / "p")
    data = json.loads((folder / "manifest.json").read_text())
    data["members"][0]["inputs"]["metadata"] = "meta"
    edit_manifest(folder, members=data["members"])
    with pytest.raises(PackageError, match="member 'member0': the ONNX graph has no input 'meta'"):
        load(folder)


def test_an_image_size_the_graph_does_not_take_is_refused(tmp_path):
    folder = build_package(tmp_path / "p")
    data = json.loads((folder / "manifest.json").read_text())
    data["members"][1]["preprocessing"]["image_size"] = 64
    edit_manifest(folder, members=data["members"])
    with pytest.raises(
        PackageError, match=r"member 'member1': image input 'image' has shape .* \[batch, 64, 64, 3\]"
    ):
        load(folder)


def test_a_file_that_is_not_onnx_cannot_be_loaded(tmp_path):
    folder = build_package(tmp_path / "p")
    (folder / "member0.onnx").write_bytes(b"definitely not a protobuf")
    with pytest.raises(PackageError, match="ONNX Runtime cannot load member0.onnx"):
        load(folder)


def test_preprocessed_inputs_are_the_shared_preprocessing(package):
    ensemble = load(package)
    data = image_bytes(width=50, height=40, seed=3)
    inputs = ensemble.prepare([data], [META])
    spec = ensemble.manifest.members[0].image
    assert np.array_equal(inputs.images[spec][0], image_tensor(data, spec))
    assert np.array_equal(inputs.metadata[0], metadata_vector(*META, ensemble.manifest.metadata))


def test_sessions_are_created_once_per_model_version():
    calls = []

    def loader():
        calls.append(1)
        return object()

    runtime.clear_cache()
    first = runtime.cached_ensemble("7:abc", loader)
    assert runtime.cached_ensemble("7:abc", loader) is first
    runtime.cached_ensemble("8:def", loader)
    runtime.cached_ensemble("9:ghi", loader)
    assert runtime.cached_ensemble("7:abc", loader) is not first  # evicted: only two versions are kept
    assert len(calls) == 4
    runtime.clear_cache()


def test_a_multiclass_ensemble_sums_the_positive_classes(tmp_path):
    folder = build_package(tmp_path / "p")
    for index in (0, 1):
        replace_member(folder, index, build_softmax_member, seed=index)
    data = json.loads((folder / "manifest.json").read_text())
    for member in data["members"]:
        member["output"] = "probabilities"
    edit_manifest(
        folder, task="multiclass", class_names=["mel", "nv", "bcc"], positive_class=["mel", "bcc"],
        members=data["members"],
    )  # fmt: skip
    ensemble = load(folder)
    (outcome,) = ensemble.predict([image_bytes(seed=4)], [META]).images
    classes = outcome.class_probabilities
    assert set(classes) == {"mel", "nv", "bcc"}
    assert sum(classes.values()) == pytest.approx(1.0, abs=1e-5)
    assert outcome.probability == pytest.approx(classes["mel"] + classes["bcc"], abs=1e-6)
    assert outcome.probability == pytest.approx(
        np.mean(list(outcome.member_probabilities.values())), abs=1e-6
    )


def test_a_multiclass_member_with_the_wrong_number_of_classes_is_refused(tmp_path):
    folder = replace_member(build_package(tmp_path / "p", members=1), 0, build_softmax_member, classes=4)
    data = json.loads((folder / "manifest.json").read_text())
    data["members"][0]["output"] = "probabilities"
    edit_manifest(folder, task="multiclass", class_names=["mel", "nv", "bcc"], positive_class="mel",
                  members=data["members"])  # fmt: skip
    manifest, _ = read_manifest(folder)
    with pytest.raises(PackageError, match="returned 4 columns for 3 classes"):
        smoke_test(folder, manifest)


def test_a_forked_child_loads_its_own_sessions_and_runs(tmp_path):
    """A prefork worker's child must not reuse the parent's ONNX Runtime sessions (not fork-safe)."""
    import multiprocessing

    from PIL import Image

    from inference.package import read_manifest
    from inference.runtime import Ensemble, RuntimeConfig, cached_ensemble
    from tests.support.onnx_models import build_package

    folder = build_package(tmp_path / "pkg")
    manifest, _ = read_manifest(folder)

    def load():
        return Ensemble(folder, manifest, RuntimeConfig(providers=("CPUExecutionProvider",)))

    parent = cached_ensemble("fork-test", load)

    def child(queue):
        loaded = []
        ensemble = cached_ensemble("fork-test", lambda: loaded.append(1) or load())
        outcomes = ensemble.predict([Image.new("RGB", (40, 40), (150, 100, 90))], [(50, "male", "torso")])
        queue.put((loaded == [1], ensemble is not parent, outcomes.images[0].probability))

    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    process = context.Process(target=child, args=(queue,))
    process.start()
    reloaded, distinct, probability = queue.get(timeout=60)
    process.join(timeout=30)
    assert process.exitcode == 0
    assert reloaded and distinct and 0.0 <= probability <= 1.0
