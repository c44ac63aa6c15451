"""Fixtures for the inference tests: a scratch model folder, a real test package, a registered active model."""

import pytest

from tests.support.onnx_models import build_package


@pytest.fixture(autouse=True)
def _model_dir(settings, tmp_path):
    settings.TELEDER_MODEL_DIR = tmp_path / "models"
    settings.TELEDER_BUNDLED_MODEL = tmp_path / "no-bundled-model"


@pytest.fixture
def package(tmp_path):
    return build_package(tmp_path / "package")


@pytest.fixture
def active_model(db, package):
    from inference.registry import model_activate, model_register

    version = model_register(package)
    return model_activate(name=version.name, version=version.version)
