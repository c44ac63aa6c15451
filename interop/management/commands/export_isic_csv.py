"""Export reported cases as an ISIC-style metadata CSV (plus the images), e.g. for training."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from pydantic import ValidationError

from cases.models import Organization
from interop import selectors, services


class Command(BaseCommand):
    help = (
        "Write OUT/metadata.csv with ISIC Archive columns (isic_id, anatom_site_general, diagnosis, "
        "diagnosis_1..3, age_approx, sex, lesion_id, ...; values checked with the isic-metadata schema) and "
        "OUT/images/ for every reported case. `python -m training` reads the CSV as it is."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("out", help="Folder to write (must not hold a metadata.csv already).")
        parser.add_argument("--organization", default="", help="Only this organization's cases (slug).")
        parser.add_argument("--no-images", action="store_true", help="Write the CSV only.")

    def handle(self, *args, **options) -> None:
        slug = options["organization"]
        if slug and not Organization.objects.filter(slug=slug).exists():
            raise CommandError(f"No organization with slug {slug!r}.")
        try:
            result = services.isic_export(
                out_dir=Path(options["out"]), organization=slug, with_images=not options["no_images"]
            )
        except FileExistsError as exc:
            raise CommandError(str(exc)) from None
        except (selectors.StoredFileCorrupt, ValidationError) as exc:
            raise CommandError(f"Export stopped: {exc}") from None
        self.stdout.write(
            f"Wrote {result.rows} image rows of {result.cases} reported cases to {result.csv_path}"
        )
