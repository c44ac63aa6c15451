"""Unpacking a zipped model package safely (pure: no Django). The registry, training's evaluation and the
benchmarks accept a package as a folder or as a .zip; this is the one way a .zip becomes a folder."""

import shutil
import stat
import zipfile
from pathlib import Path, PurePosixPath

from inference.package import MANIFEST_NAME, MAX_PACKAGE_BYTES, PackageError


def extract_zip(archive: Path, destination: Path) -> Path:
    """Unpack a zipped package safely into ``destination`` and return the folder holding manifest.json.

    Refuses absolute paths, '..', links and archives that expand beyond :data:`inference.package.MAX_PACKAGE_BYTES`.
    """
    try:
        bundle = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise PackageError(f"{Path(archive).name} is not a readable zip file ({exc})") from exc
    destination = Path(destination)
    destination.mkdir(parents=True, exist_ok=True)
    root = destination.resolve()
    with bundle:
        entries = bundle.infolist()
        if sum(e.file_size for e in entries) > MAX_PACKAGE_BYTES:
            raise PackageError("the zip expands to more than 4 GB")
        for entry in entries:
            name = entry.filename
            parts = PurePosixPath(name).parts
            if name.startswith(("/", "\\")) or "\\" in name or ".." in parts or (parts and ":" in parts[0]):
                raise PackageError(f"the zip holds an unsafe path {name!r}")
            if stat.S_ISLNK(entry.external_attr >> 16):
                raise PackageError(f"the zip holds a link {name!r}; packages contain plain files only")
            target = (root / name).resolve()
            if not target.is_relative_to(root):
                raise PackageError(f"the zip holds an unsafe path {name!r}")
            if entry.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with bundle.open(entry) as source, open(target, "wb") as sink:
                    shutil.copyfileobj(source, sink, 1024 * 1024)
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
                raise PackageError(f"the zip is damaged: {name} cannot be read ({exc})") from exc
    manifests = sorted(root.rglob(MANIFEST_NAME), key=lambda p: len(p.parts))
    if not manifests:
        raise PackageError(f"the zip holds no {MANIFEST_NAME}")
    return manifests[0].parent
