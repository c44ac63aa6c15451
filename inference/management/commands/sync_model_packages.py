"""Copy registered model packages between this machine's model folder and the shared file store (S3).

    manage.py sync_model_packages push          # after register_model: upload every local package
    manage.py sync_model_packages pull [--all]  # on a worker machine: fetch the active version (or all)

Worker machines that do not share a disk with the machine that registered a model run ``pull`` before
starting (docker/Dockerfile.worker-gpu does). Packages are stored under ``models/<name>/<version>/`` and
checked against the manifest's sha256 sums after download; a bad copy is removed, never served.
"""

import shutil
import tempfile
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from inference.models import ModelVersion
from inference.package import PackageError, read_manifest, verify_files
from inference.selectors import active_model_version
from teleder.storage import ProtectedFileError, package_fetch, package_upload


def storage_prefix(version: ModelVersion) -> str:
    return f"models/{version.name}/{version.version}"


class Command(BaseCommand):
    help = "Upload registered model packages to the file store (push) or fetch them from it (pull)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("direction", choices=["push", "pull"])
        parser.add_argument(
            "--all", action="store_true", help="pull: every registered version, not only the active one"
        )

    def handle(self, *args, **options) -> None:
        if options["direction"] == "push":
            self._push()
        else:
            self._pull(every=options["all"])

    def _push(self) -> None:
        pushed = 0
        for version in ModelVersion.objects.order_by("created_at"):
            folder = Path(version.package_path)
            if not (folder / "manifest.json").is_file():
                self.stderr.write(f"{version}: not on this machine ({folder}); skipped")
                continue
            try:
                names = package_upload(folder, prefix=storage_prefix(version))
            except ProtectedFileError as exc:
                raise CommandError(f"{version}: {exc}") from None
            pushed += 1
            self.stdout.write(f"{version}: {len(names)} files in models storage")
        self.stdout.write(f"pushed {pushed} package(s)")

    def _pull(self, *, every: bool) -> None:
        if every:
            versions = list(ModelVersion.objects.order_by("created_at"))
        else:
            active = active_model_version()
            if active is None:
                self.stdout.write("no active model version: nothing to pull")
                return
            versions = [active]
        for version in versions:
            target = Path(version.package_path)
            if (target / "manifest.json").is_file():
                self.stdout.write(f"{version}: already here")
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(prefix=".pull-", dir=target.parent) as scratch:
                folder = Path(scratch) / "package"
                try:
                    package_fetch(storage_prefix(version), folder)
                except OSError as exc:
                    raise CommandError(f"{version}: could not read the file store: {exc}") from None
                if not folder.is_dir() or not any(folder.iterdir()):
                    raise CommandError(
                        f"{version}: nothing stored under {storage_prefix(version)}/ (run push first)"
                    )
                try:
                    manifest, manifest_sha = read_manifest(folder)
                    if manifest_sha != version.sha256:
                        raise PackageError("manifest.json differs from the one that was registered")
                    verify_files(folder, manifest)
                except PackageError as exc:
                    raise CommandError(f"{version}: the stored package is unusable: {exc}") from None
                shutil.move(str(folder), target)
            self.stdout.write(f"{version}: fetched into {target}")
