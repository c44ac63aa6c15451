"""File storage for images, model packages and reports: local files or S3 (any S3 API, e.g. MinIO).

Signed reports are evidence: once stored under ``reports/`` a file is never deleted or overwritten through the
application (a correction is a new addendum file). Everything else is stored under unique names and never
overwritten silently either (``file_overwrite=False`` on S3).
"""

import hashlib
from pathlib import Path

from django.core.files.base import File
from django.core.files.storage import FileSystemStorage as DjangoFileSystemStorage
from django.core.files.storage import Storage, default_storage
from storages.backends.s3 import S3Storage as DjangoS3Storage

PROTECTED_PREFIXES: tuple[str, ...] = ("reports/",)


class ProtectedFileError(PermissionError):
    """A delete or an overwrite of a file that must stay as it was stored (a signed report)."""


def is_protected(name: str) -> bool:
    name = str(name).replace("\\", "/").lstrip("/")
    return name.startswith(PROTECTED_PREFIXES)


class _ProtectedMixin(Storage):
    def delete(self, name: str) -> None:
        if is_protected(name):
            raise ProtectedFileError(f"{name} is a stored report and cannot be deleted.")
        super().delete(name)

    def get_available_name(self, name: str, max_length: int | None = None) -> str:
        if is_protected(name) and self.exists(name):
            raise ProtectedFileError(f"{name} already exists; stored reports are never overwritten.")
        return super().get_available_name(name, max_length=max_length)


class FileSystemStorage(_ProtectedMixin, DjangoFileSystemStorage):
    """Local files (the single-machine default)."""


class S3Storage(_ProtectedMixin, DjangoS3Storage):
    """S3 or an S3-compatible store. Never overwrites: a clash gets a new name, or an error under reports/."""

    def get_default_settings(self) -> dict:
        defaults = super().get_default_settings()
        defaults["file_overwrite"] = False
        defaults["default_acl"] = None
        return defaults


def file_sha256(name: str, storage: Storage | None = None) -> str:
    """sha256 of a stored file, read back in chunks (to check what the store holds against the database)."""
    storage = storage or default_storage
    digest = hashlib.sha256()
    with storage.open(name, "rb") as handle:
        for chunk in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(chunk)
    return digest.hexdigest()


def package_upload(folder: Path, *, prefix: str, storage: Storage | None = None) -> list[str]:
    """Copy a model package folder to storage under ``prefix`` (e.g. ``models/<name>/<version>``) so that
    worker machines without a shared disk can fetch it; returns the stored names."""
    storage = storage or default_storage
    stored = []
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        name = f"{prefix.rstrip('/')}/{path.relative_to(folder).as_posix()}"
        if storage.exists(name):
            if file_sha256(name, storage) == hashlib.sha256(path.read_bytes()).hexdigest():
                stored.append(name)
                continue
            raise ProtectedFileError(f"{name} exists with different content; packages are immutable.")
        with path.open("rb") as handle:
            stored.append(storage.save(name, File(handle)))
    return stored


def package_fetch(prefix: str, destination: Path, *, storage: Storage | None = None) -> Path:
    """Download a package stored by ``package_upload`` into ``destination`` (a local folder)."""
    storage = storage or default_storage
    destination = Path(destination)

    def walk(folder: str) -> None:
        directories, files = storage.listdir(folder)
        for file_name in files:
            name = f"{folder}/{file_name}"
            target = destination / Path(name).relative_to(prefix.rstrip("/"))
            target.parent.mkdir(parents=True, exist_ok=True)
            with storage.open(name, "rb") as source, target.open("wb") as sink:
                for chunk in iter(lambda: source.read(1024 * 1024), b""):
                    sink.write(chunk)
        for directory in directories:
            walk(f"{folder}/{directory}")

    walk(prefix.rstrip("/"))
    return destination


def storage_reachable() -> bool:
    """Whether the default storage answers (used by /readyz). Raises nothing."""
    try:
        default_storage.exists("readyz-probe")
    except Exception:  # noqa: BLE001 - any failure means not ready
        return False
    return True
