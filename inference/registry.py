"""Model versions: register (validate and store a package as a candidate), activate (exactly one active),
roll back (activate the previous one), and load the active ensemble in a worker.

Registration copies the package's own files to ``TELEDER_MODEL_DIR/<name>/<version>/`` and checks the copy:
every sha256, every member loading in ONNX Runtime with the inputs the manifest names, and a smoke batch
giving probabilities of the right shape. Anything wrong is refused with a ``ValidationError`` naming it.
"""

import logging
import shutil
import tempfile
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from cases.audit import AuditAction, audit_record
from cases.models import User
from inference import runtime
from inference.archive import extract_zip
from inference.models import ModelStatus, ModelVersion
from inference.package import (
    MANIFEST_NAME,
    Manifest,
    PackageError,
    model_card_file,
    package_files,
    parse_manifest,
    read_manifest,
    verify_files,
)
from inference.selectors import active_model_version, model_version_get

__all__ = [
    "active_model_version",
    "ensemble_for",
    "model_activate",
    "model_register",
    "register_bundled_model",
    "runtime_config",
]

logger = logging.getLogger(__name__)
MAX_MODEL_CARD_CHARS = 200_000


def runtime_config() -> runtime.RuntimeConfig:
    return runtime.RuntimeConfig(
        providers=tuple(settings.TELEDER_ORT_PROVIDERS),
        intra_op_threads=settings.TELEDER_ORT_INTRA_OP_THREADS,
        inter_op_threads=settings.TELEDER_ORT_INTER_OP_THREADS,
    )


def _model_dir() -> Path:
    return Path(settings.TELEDER_MODEL_DIR)


def _unpack(source: Path, scratch: Path) -> Path:
    if source.is_dir():
        return source
    if source.is_file() and source.suffix.lower() == ".zip":
        return extract_zip(source, scratch / "unpacked")
    if source.is_file() and source.name == MANIFEST_NAME:
        return source.parent
    raise PackageError(f"{source} is not a package folder or a .zip file")


def model_register(path: str | Path, *, actor: User | None = None) -> ModelVersion:
    """Validate the package at ``path`` (folder or .zip) and store it as a candidate version."""
    source = Path(path).expanduser()
    if not source.exists():
        raise ValidationError(f"{source} does not exist.")
    _model_dir().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".incoming-", dir=_model_dir()) as scratch:
        try:
            folder = _unpack(source, Path(scratch))
            manifest, manifest_sha = read_manifest(folder)
            existing = model_version_get(name=manifest.name, version=manifest.version)
            if existing is not None:
                raise PackageError(
                    f"{manifest.label} is already registered ({existing.get_status_display().lower()}); "
                    "give the new package a new version"
                )
            verify_files(folder, manifest)
            staging = Path(scratch) / "package"
            staging.mkdir()
            for name in package_files(folder, manifest):
                (staging / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(folder / name, staging / name)
            # What is served is the copy: check the copy, not the original.
            verify_files(staging, manifest)
            runtime.smoke_test(staging, manifest, runtime_config())
        except PackageError as exc:
            raise ValidationError(f"Package refused: {exc}.", code="package_invalid") from exc
        final = _model_dir() / manifest.name / manifest.version
        if final.exists():  # left over by an earlier registration that failed after the copy
            shutil.rmtree(final)
        final.parent.mkdir(parents=True, exist_ok=True)
        staging.rename(final)
    card = model_card_file(final)
    try:
        with transaction.atomic():
            version = ModelVersion(
                name=manifest.name,
                version=manifest.version,
                task=manifest.task,
                status=ModelStatus.CANDIDATE,
                sha256=manifest_sha,
                package_path=str(final),
                manifest=manifest.raw,
                metrics=manifest.metrics,
                model_card=card.read_text(errors="replace")[:MAX_MODEL_CARD_CHARS] if card else "",
                threshold=manifest.threshold,
                registered_by=actor if getattr(actor, "is_authenticated", False) else None,
            )
            version.full_clean()
            version.save()
            audit_record(
                actor=actor,
                action=AuditAction.MODEL_REGISTER,
                obj=version,
                name=manifest.name,
                version=manifest.version,
                sha256=manifest_sha,
                members=len(manifest.members),
            )
    except (IntegrityError, ValidationError):
        shutil.rmtree(final, ignore_errors=True)
        if model_version_get(name=manifest.name, version=manifest.version) is not None:
            raise ValidationError(f"{manifest.label} is already registered.", code="duplicate") from None
        raise
    logger.info("registered model %s as a candidate", manifest.label)
    return version


def model_activate(
    *, name: str, version: str, actor: User | None = None, force_reason: str = ""
) -> ModelVersion:
    """Make ``name version`` the one active model, atomically; the previously active one is retired.

    Rolling back is activating the previous version again. A candidate whose shadow evaluation showed a
    sensitivity drop beyond the allowed one is refused unless ``force_reason`` says why (audited).
    """
    from inference.shadow import activation_refusal

    target = model_version_get(name=name, version=version)
    if target is None:
        raise ValidationError(f"No model {name} {version} is registered.", code="not_found")
    refusal = activation_refusal(target)
    if refusal and not force_reason.strip():
        raise ValidationError(
            f"{refusal}. Activate it anyway only with --force and a --reason.", code="sensitivity_drop"
        )
    try:
        verify_files(Path(target.package_path), parse_manifest(target.manifest))
    except PackageError as exc:
        raise ValidationError(f"{target} cannot be activated: {exc}.", code="package_invalid") from exc
    with transaction.atomic():
        target = ModelVersion.objects.select_for_update().get(pk=target.pk)
        if target.status == ModelStatus.ACTIVE:
            return target
        previous = list(ModelVersion.objects.select_for_update().filter(status=ModelStatus.ACTIVE))
        for old in previous:
            old.status = ModelStatus.RETIRED
            old.save(update_fields=["status"])
        target.status = ModelStatus.ACTIVE
        target.activated_at = timezone.now()
        target.save(update_fields=["status", "activated_at"])
        audit_record(
            actor=actor,
            action=AuditAction.MODEL_ACTIVATE,
            obj=target,
            name=target.name,
            version=target.version,
            previous=[str(old) for old in previous],
            **({"forced": True, "reason": force_reason.strip(), "refusal": refusal} if refusal else {}),
        )
        # The similarity library's features are per model version: recompute them in the background.
        transaction.on_commit(lambda: _enqueue_library_recompute(target.pk))
    logger.info("activated model %s (previously %s)", target, ", ".join(map(str, previous)) or "none")
    return target


# Published by name (the similarity app sits above inference, as cases know the analysis task by name).
RECOMPUTE_LIBRARY_TASK = "similarity.tasks.recompute_embeddings"


def _enqueue_library_recompute(model_version_id: int) -> None:
    """Ask for the similarity library's features under the newly active version; a broker outage is logged
    (the library's sweep publishes it again)."""
    from teleder.celery import app

    try:
        app.send_task(RECOMPUTE_LIBRARY_TASK, args=[model_version_id], queue="inference")
    except Exception:  # noqa: BLE001 - activating a model must not fail because the broker is away
        logger.warning("could not enqueue the similarity recompute of %s", model_version_id, exc_info=True)


def register_bundled_model() -> ModelVersion | None:
    """Register the package shipped with the code (``TELEDER_BUNDLED_MODEL``) if there is one, reusing an
    existing registration of the same name and version, and activate it if no model is active yet."""
    folder = Path(settings.TELEDER_BUNDLED_MODEL)
    if not (folder / MANIFEST_NAME).is_file():
        return None
    try:
        manifest, _ = read_manifest(folder)
    except PackageError as exc:
        raise ValidationError(f"The bundled model at {folder} is invalid: {exc}.") from exc
    version = model_version_get(name=manifest.name, version=manifest.version)
    if version is None:
        try:
            version = model_register(folder)
        except ValidationError:
            version = model_version_get(name=manifest.name, version=manifest.version)
            if version is None:
                raise
    if active_model_version() is None:
        version = model_activate(name=version.name, version=version.version)
    return version


def manifest_of(version: ModelVersion) -> Manifest:
    return parse_manifest(version.manifest)


def ensemble_for(version: ModelVersion) -> runtime.Ensemble:
    """The loaded ensemble of ``version``, created once per worker process and reused for every case."""
    key = f"{version.pk}:{version.sha256}"

    def load() -> runtime.Ensemble:
        manifest = manifest_of(version)
        # A file replaced or damaged after registration is refused, not served.
        verify_files(Path(version.package_path), manifest)
        return runtime.Ensemble(Path(version.package_path), manifest, runtime_config())

    return runtime.cached_ensemble(key, load)
