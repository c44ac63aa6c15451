from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from inference.registry import model_activate
from inference.selectors import active_model_version


class Command(BaseCommand):
    help = "Make a registered model version the one active model (roll back by activating the previous one)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("name")
        parser.add_argument("version")
        parser.add_argument(
            "--force",
            action="store_true",
            help="activate although its shadow evaluation showed a sensitivity drop (needs --reason)",
        )
        parser.add_argument("--reason", default="", help="why the refusal is overridden (audited)")

    def handle(self, *args, name: str, version: str, force=False, reason="", **options) -> None:
        if force and not reason.strip():
            raise CommandError("--force needs a --reason (it is recorded in the audit trail)")
        previous = active_model_version()
        try:
            activated = model_activate(name=name, version=version, force_reason=reason if force else "")
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        if previous is not None and previous.pk == activated.pk:
            self.stdout.write(f"{activated} is already active.")
            return
        was = f" (previously {previous})" if previous else ""
        self.stdout.write(self.style.SUCCESS(f"Activated {activated}{was}."))
