"""Registering, activating and rolling back model versions: services, management commands and admin."""

import io
import zipfile

import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.db import IntegrityError, transaction

from cases.models import AuditEvent
from inference.models import ModelStatus, ModelVersion
from inference.registry import model_activate, model_register, register_bundled_model
from inference.selectors import active_model_version
from tests.inference.members import build_unnormalised_member, edit_manifest, replace_member
from tests.support.factories import UserFactory
from tests.support.onnx_models import build_package


def run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def zipped(folder, archive):
    with zipfile.ZipFile(archive, "w") as bundle:
        for path in folder.iterdir():
            bundle.write(path, path.name)
    return archive


@pytest.mark.django_db
def test_a_valid_package_is_copied_checked_and_stored_as_a_candidate(package, settings):
    version = model_register(package)
    assert version.status == ModelStatus.CANDIDATE
    assert (version.name, version.version, version.task, version.threshold) == (
        "test-ensemble",
        "1.0.0",
        "binary",
        0.3,
    )
    stored = settings.TELEDER_MODEL_DIR / "test-ensemble" / "1.0.0"
    assert version.package_path == str(stored)
    assert sorted(p.name for p in stored.iterdir()) == ["manifest.json", "member0.onnx", "member1.onnx"]
    assert version.manifest["members"][0]["name"] == "member0"
    assert AuditEvent.objects.filter(action="model.register", object_id=str(version.pk)).exists()
    assert active_model_version() is None


@pytest.mark.django_db
def test_a_zipped_package_registers(tmp_path):
    archive = zipped(build_package(tmp_path / "p", version="2.0"), tmp_path / "p.zip")
    assert model_register(archive).version == "2.0"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda f: (f / "member1.onnx").write_bytes(b"tampered"), "member 'member1': checksum mismatch"),
        (lambda f: (f / "member0.onnx").unlink(), "member0.onnx is missing from the package"),
        (lambda f: (f / "manifest.json").unlink(), "manifest.json is missing"),
        (lambda f: edit_manifest(f, task="regression"), "task must be one of binary, multiclass"),
        (lambda f: replace_member(f, 1, build_unnormalised_member), "smoke test failed: member 'member1'"),
        (
            lambda f: edit_manifest(f, metadata={"age_scale": 100, "sexes": ["m", "f", "x"], "sites": ["a"]}),
            "metadata input 'metadata' has shape",
        ),
    ],
)
def test_a_corrupt_or_incompatible_package_is_refused_with_the_problem_named(
    tmp_path, settings, damage, message
):
    folder = build_package(tmp_path / "p")
    damage(folder)
    with pytest.raises(ValidationError) as excinfo:
        model_register(folder)
    assert message in " ".join(excinfo.value.messages)
    assert not ModelVersion.objects.exists()
    assert not (settings.TELEDER_MODEL_DIR / "test-ensemble" / "1.0.0").exists()


@pytest.mark.django_db
def test_the_same_name_and_version_cannot_be_registered_twice(package):
    model_register(package)
    with pytest.raises(ValidationError, match="already registered"):
        model_register(package)


@pytest.mark.django_db
def test_activation_keeps_exactly_one_active_and_rollback_is_activating_the_previous(tmp_path):
    first = model_register(build_package(tmp_path / "a", version="1"))
    second = model_register(build_package(tmp_path / "b", version="2"))
    model_activate(name=first.name, version="1")
    model_activate(name=second.name, version="2")
    assert active_model_version() == second
    first.refresh_from_db()
    assert first.status == ModelStatus.RETIRED
    model_activate(name=first.name, version="1")  # roll back
    assert active_model_version() == first
    assert ModelVersion.objects.filter(status=ModelStatus.ACTIVE).count() == 1
    assert AuditEvent.objects.filter(action="model.activate").count() == 3


@pytest.mark.django_db
def test_the_database_refuses_a_second_active_version(tmp_path):
    first = model_register(build_package(tmp_path / "a", version="1"))
    second = model_register(build_package(tmp_path / "b", version="2"))
    model_activate(name=first.name, version="1")
    with pytest.raises(IntegrityError), transaction.atomic():
        ModelVersion.objects.filter(pk=second.pk).update(status=ModelStatus.ACTIVE)


@pytest.mark.django_db
def test_a_version_whose_files_were_damaged_after_registration_cannot_be_activated(package):
    version = model_register(package)
    with open(f"{version.package_path}/member0.onnx", "ab") as handle:
        handle.write(b"x")
    with pytest.raises(ValidationError, match="checksum mismatch"):
        model_activate(name=version.name, version=version.version)
    assert active_model_version() is None


@pytest.mark.django_db
def test_the_commands_register_activate_and_list(tmp_path):
    out = run("register_model", str(build_package(tmp_path / "a", version="1")))
    assert "Registered test-ensemble 1 as a candidate" in out
    out = run("register_model", str(build_package(tmp_path / "b", version="2")), "--activate")
    assert "Activated test-ensemble 2." in out
    out = run("activate_model", "test-ensemble", "1")
    assert "Activated test-ensemble 1 (previously test-ensemble 2)." in out
    listing = run("list_models").splitlines()
    assert listing[0].split()[:3] == ["NAME", "VERSION", "STATUS"]
    rows = {line.lstrip("* ").split()[1]: line for line in listing[1:]}
    assert rows["1"].startswith("*") and "active" in rows["1"]
    assert "retired" in rows["2"]


@pytest.mark.django_db
def test_the_commands_explain_what_is_wrong(tmp_path):
    folder = build_package(tmp_path / "p")
    (folder / "member1.onnx").write_bytes(b"junk")
    with pytest.raises(CommandError, match="Package refused: member 'member1': checksum mismatch"):
        run("register_model", str(folder))
    with pytest.raises(CommandError, match="does not exist"):
        run("register_model", str(tmp_path / "nowhere"))
    with pytest.raises(CommandError, match="No model test-ensemble 9 is registered"):
        run("activate_model", "test-ensemble", "9")
    assert "No model versions are registered" in run("list_models")


@pytest.mark.django_db
def test_the_bundled_model_is_registered_once_and_activated_if_nothing_is_active(tmp_path, settings):
    assert register_bundled_model() is None  # no bundled package yet
    settings.TELEDER_BUNDLED_MODEL = build_package(tmp_path / "bundled", name="default", version="0.1")
    version = register_bundled_model()
    assert version.status == ModelStatus.ACTIVE
    assert register_bundled_model() == version
    assert ModelVersion.objects.count() == 1


@pytest.mark.django_db
def test_the_bundled_model_does_not_replace_an_active_one(tmp_path, settings, active_model):
    settings.TELEDER_BUNDLED_MODEL = build_package(tmp_path / "bundled", name="default", version="0.1")
    assert register_bundled_model().status == ModelStatus.CANDIDATE
    assert active_model_version() == active_model


def upload_of(path) -> SimpleUploadedFile:
    return SimpleUploadedFile(path.name, path.read_bytes(), "application/zip")


@pytest.fixture
def superuser(db):
    return UserFactory(username="root", is_staff=True, is_superuser=True, role="admin")


def test_admins_register_activate_and_roll_back_in_the_web_admin(client, superuser, tmp_path):
    client.force_login(superuser)
    url = "/admin/inference/modelversion/register/"
    bad = build_package(tmp_path / "bad", version="0")
    (bad / "member0.onnx").write_bytes(b"junk")
    response = client.post(url, {"archive": upload_of(zipped(bad, tmp_path / "bad.zip"))})
    assert response.status_code == 200
    assert "checksum mismatch" in response.content.decode()
    for version in ("1", "2"):
        archive = zipped(build_package(tmp_path / version, version=version), tmp_path / f"{version}.zip")
        response = client.post(url, {"archive": upload_of(archive), "activate": "on"})
        assert response.status_code == 302
    assert active_model_version().version == "2"
    changelist = "/admin/inference/modelversion/"
    page = client.get(changelist).content.decode()
    assert "Register a model package" in page and "test-ensemble" in page
    one = ModelVersion.objects.get(version="1")
    response = client.post(changelist, {"action": "roll_back", "_selected_action": [one.pk]}, follow=True)
    assert "test-ensemble 1 is now the active model." in [str(m) for m in response.context["messages"]]
    assert active_model_version() == one
    two = ModelVersion.objects.get(version="2")
    client.post(changelist, {"action": "activate_selected", "_selected_action": [two.pk]})
    assert active_model_version() == two
