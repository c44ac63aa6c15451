from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from inference.registry import model_activate, model_register


class Command(BaseCommand):
    help = "Validate a model package (folder or .zip) and register it as a candidate version."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "path", help="Package folder or .zip holding manifest.json and the member ONNX files."
        )
        parser.add_argument(
            "--activate", action="store_true", help="Make it the active model once registered."
        )

    def handle(self, *args, path: str, activate: bool, **options) -> None:
        try:
            version = model_register(path)
            self.stdout.write(
                self.style.SUCCESS(f"Registered {version} as a candidate ({version.package_path}).")
            )
            if activate:
                version = model_activate(name=version.name, version=version.version)
                self.stdout.write(self.style.SUCCESS(f"Activated {version}."))
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
