"""Model packages shared through S3: pushed after registration, pulled and checked on a worker machine."""

import io
import shutil
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from inference.registry import model_activate, model_register
from tests.support.onnx_models import build_package

pytestmark = pytest.mark.django_db


@pytest.fixture
def active_version(s3_storage, tmp_path, settings):
    settings.TELEDER_MODEL_DIR = tmp_path / "models"
    version = model_register(build_package(tmp_path / "pkg", name="sync-check", version="3.1.0"))
    return model_activate(name=version.name, version=version.version)


def _call(*args: str) -> str:
    out = io.StringIO()
    call_command("sync_model_packages", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_a_worker_machine_pulls_the_active_package_intact(active_version, s3_storage):
    local = Path(active_version.package_path)
    original = {p.name: p.read_bytes() for p in local.iterdir()}

    assert "pushed 1 package(s)" in _call("push")
    assert s3_storage.exists("models/sync-check/3.1.0/manifest.json")
    shutil.rmtree(local)  # a fresh machine: the database knows the version, the disk does not

    assert "fetched into" in _call("pull")
    assert {p.name: p.read_bytes() for p in local.iterdir()} == original
    assert "already here" in _call("pull")


def test_a_corrupt_stored_package_is_refused_and_not_left_behind(active_version, s3_storage):
    _call("push")
    member = active_version.manifest["members"][0]["file"]
    s3_storage.bucket.Object(f"models/sync-check/3.1.0/{member}").put(Body=b"not an onnx model")
    local = Path(active_version.package_path)
    shutil.rmtree(local)

    with pytest.raises(CommandError, match="unusable: member .* checksum mismatch"):
        _call("pull")

    assert not local.exists()
    assert [p.name for p in local.parent.iterdir()] == []


def test_pull_says_so_when_nothing_was_pushed(active_version):
    shutil.rmtree(active_version.package_path)

    with pytest.raises(
        CommandError, match=r"nothing stored under models/sync-check/3.1.0/ \(run push first\)"
    ):
        _call("pull")


def test_a_pushed_package_is_immutable(active_version, s3_storage):
    _call("push")
    (Path(active_version.package_path) / "manifest.json").write_text("{}")

    with pytest.raises(CommandError, match="exists with different content"):
        _call("push")
