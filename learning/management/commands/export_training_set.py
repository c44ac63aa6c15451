"""Export reviewed cases of opted-in organizations as a training data folder (see learning.services)."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from cases.models import Organization
from cases.selectors import parse_when
from learning.services import ExportError, training_set_export


class Command(BaseCommand):
    help = (
        "Write reviewed cases as a training data folder (labels.csv in the training CSV format + images/). "
        "Only organizations that opted in (manage.py training_data_sharing SLUG --enable) are exported."
    )

    def add_arguments(self, parser):
        parser.add_argument("--out", required=True, help="a new or empty folder")
        parser.add_argument("--organization", help="slug of one organization (default: every opted-in one)")
        parser.add_argument("--since", help="only reviews from this date on (YYYY-MM-DD)")

    def handle(self, *args, out, organization=None, since=None, **options):
        org = None
        if organization:
            org = Organization.objects.filter(slug=organization).first()
            if org is None:
                raise CommandError(f"no organization with slug {organization!r}")
        try:
            since_at = parse_when(since)
        except Exception as exc:  # noqa: BLE001 - any unreadable date is a usage error
            raise CommandError(f"--since: {exc}") from exc
        try:
            result = training_set_export(out_dir=Path(out), organization=org, since=since_at)
        except ExportError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"Exported {result.cases} cases ({result.images} images, {result.malignant_cases} malignant) "
            f"to {result.out_dir}: {result.by_organization}"
        )
