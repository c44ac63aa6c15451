from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from similarity.services import ImportRefused, reference_set_import


class Command(BaseCommand):
    help = (
        "Import a labelled image set into the similar-lesion library: a data CSV (image_id,filename,diagnosis,"
        "malignant,... as training reads it; images relative to the CSV). Every row or none: a bad row refuses "
        "the file with its line number. Thumbnails and features (under the active model) are stored; age, sex, "
        "site and lesion ids are not."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("csv", help="the labels CSV")
        parser.add_argument(
            "--source", default="", help="the set's name and origin (default: the CSV's name)"
        )
        parser.add_argument("--licence", default="", help="the licence the images are shown under")

    def handle(self, *args, csv: str, source: str = "", licence: str = "", **options) -> None:
        if not Path(csv).is_file():
            raise CommandError(f"{csv}: no such CSV file")
        try:
            reference_set = reference_set_import(csv_path=csv, source=source, licence=licence)
        except (ImportRefused, ValidationError) as exc:
            message = " ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
            raise CommandError(f"Nothing imported. {message}") from None
        count = reference_set.images.count()
        with_features = reference_set.images.filter(embeddings__isnull=False).distinct().count()
        self.stdout.write(
            self.style.SUCCESS(
                f"Imported {count} reference images as {reference_set.source!r} "
                f"(licence: {reference_set.licence or 'not stated'}; features for {with_features})."
            )
        )
