"""Show or change whether an organization shares its reviewed cases as training data (audited)."""

from django.core.management.base import BaseCommand, CommandError

from cases.models import Organization
from learning.models import TrainingDataSharing
from learning.services import training_sharing_set


class Command(BaseCommand):
    help = (
        "Show or change an organization's opt-in to export its reviewed cases as training data (default off)."
    )

    def add_arguments(self, parser):
        parser.add_argument("organization", help="organization slug")
        group = parser.add_mutually_exclusive_group()
        group.add_argument("--enable", action="store_true", help="opt in")
        group.add_argument("--disable", action="store_true", help="opt out")

    def handle(self, *args, organization, enable=False, disable=False, **options):
        org = Organization.objects.filter(slug=organization).first()
        if org is None:
            raise CommandError(f"no organization with slug {organization!r}")
        if enable or disable:
            training_sharing_set(actor=None, organization=org, enabled=enable)
        enabled = TrainingDataSharing.objects.filter(organization=org, enabled=True).exists()
        self.stdout.write(f"{org.slug}: training data sharing {'on' if enabled else 'off'}")
