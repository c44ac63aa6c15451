"""Fixtures for the similarity library: a tiny real ONNX package whose members also give pooled features (the
mean colour of each 8x8 patch: images of similar colours are near), two organizations with analysed and
reviewed cases, and generated images of chosen colours."""

import io
from pathlib import Path

import numpy as np
import onnx
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from cases import services
from inference.package import member_entry, write_manifest
from inference.preprocessing import ImageSpec
from inference.tasks import analyse_case
from tests.support.factories import LesionFactory, PatientFactory
from tests.support.onnx_models import METADATA_SIZE, build_package

SIZE = 32


def build_feature_member(path: Path, *, seed: int = 0) -> Path:
    """sigmoid(a * mean(image) + w . metadata + b), and ``patch_features`` (N, 48): 8x8 patch colour means."""
    rng = np.random.default_rng(seed)
    nodes = [
        helper.make_node("ReduceMean", ["image"], ["pooled"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("Unsqueeze", ["pooled", "axis1"], ["pooled2"]),
        helper.make_node("Mul", ["pooled2", "a"], ["img_term"]),
        helper.make_node("MatMul", ["metadata", "w"], ["meta_term"]),
        helper.make_node("Add", ["img_term", "meta_term"], ["s1"]),
        helper.make_node("Add", ["s1", "b"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["probability"]),
        helper.make_node("Transpose", ["image"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("AveragePool", ["nchw"], ["patches"], kernel_shape=[8, 8], strides=[8, 8]),
        helper.make_node("Flatten", ["patches"], ["patch_features"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        f"feature_member{seed}",
        [
            helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", SIZE, SIZE, 3]),
            helper.make_tensor_value_info("metadata", TensorProto.FLOAT, ["batch", METADATA_SIZE]),
        ],
        [helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["batch", 1])],
        initializer=[
            numpy_helper.from_array(rng.normal(0, 0.5, (METADATA_SIZE, 1)).astype(np.float32), "w"),
            numpy_helper.from_array(np.array([4.0 + seed], dtype=np.float32), "a"),
            numpy_helper.from_array(np.array([-2.0], dtype=np.float32), "b"),
            numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def build_feature_package(folder: Path, *, version: str = "1.0.0", members: int = 2) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for i in range(members):
        build_feature_member(folder / f"member{i}.onnx", seed=i)
        entries.append(
            member_entry(
                f"member{i}",
                folder / f"member{i}.onnx",
                ImageSpec(size=SIZE, normalisation="unit"),
                "probability",
                outputs={"features": "patch_features"},
            )
        )
    write_manifest(
        folder,
        name="feature-ensemble",
        version=version,
        members=entries,
        threshold=0.5,
        risk_bands={"medium": 0.5, "high": 0.8},
        training={"data": "generated test images", "n_train": 0},
        metrics={"auc": 0.5},
    )
    return folder


def colour_image(rgb, *, seed: int = 0, noise: int = 6, size: int = 96) -> bytes:
    """A lesion-sized image of one colour (a little noise, so that no two are identical files)."""
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(rgb)[None, None, :] + rng.integers(-noise, noise + 1, (size, size, 3)), 0, 255)
    out = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(autouse=True)
def _model_dir(settings, tmp_path):
    settings.TELEDER_MODEL_DIR = tmp_path / "models"
    settings.TELEDER_BUNDLED_MODEL = tmp_path / "no-bundled-model"


def register(package: Path):
    from inference.registry import model_activate, model_register

    version = model_register(package)
    return model_activate(name=version.name, version=version.version)


@pytest.fixture
def feature_model(db, tmp_path):
    """The active model: a real ONNX package whose members give pooled features."""
    return register(build_feature_package(tmp_path / "feature-package"))


@pytest.fixture
def plain_model(db, tmp_path):
    """The active model: a package that declares no features (1.2.x packages look like this)."""
    return register(build_package(tmp_path / "plain-package"))


@pytest.fixture
def submit(db):
    """Submit and analyse (through the analysis task) a one-image case of ``rgb`` for ``clinician``."""

    def make(clinician, rgb, *, seed: int = 0, lesion=None):
        organization = clinician.organizations.first()
        if lesion is None:
            lesion = LesionFactory(patient=PatientFactory(organization=organization, created_by=clinician))
        image = SimpleUploadedFile("lesion.png", colour_image(rgb, seed=seed), "image/png")
        case = services.case_submit(actor=clinician, lesion=lesion, images=[image], analyse=False).case
        analyse_case.apply(args=[case.pk], throw=False)
        case.refresh_from_db()
        return case

    return make


@pytest.fixture
def confirm():
    """A dermatologist's review of an analysed case: its diagnosis becomes the library's label."""

    def review(case, dermatologist, diagnosis: str, malignant: bool):
        return services.review_submit(
            actor=dermatologist,
            case=case,
            diagnosis=diagnosis,
            malignant=malignant,
            management="biopsy" if malignant else "reassure",
        )

    return review
