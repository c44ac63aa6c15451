from django.core.management.base import BaseCommand, CommandError

from inference.selectors import active_model_version
from similarity import pgvector, services
from similarity.selectors import feature_progress


class Command(BaseCommand):
    help = (
        "Compute the similar-lesion library's missing features for the active model now, in this process "
        "(the same work the background task does after an activation), and report the progress."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--chunk", type=int, default=64, help="images per batch (default 64)")

    def handle(self, *args, chunk: int = 64, **options) -> None:
        version = active_model_version()
        if version is None:
            raise CommandError("No model is active.")
        if chunk < 1:
            raise CommandError("--chunk must be 1 or more")
        if pgvector.ensure_column():
            self.stdout.write(f"pgvector: {pgvector.backfill()} stored vectors copied to the vector column.")
        while True:
            result = services.embeddings_compute_missing(model_version=version, limit=chunk)
            self.stdout.write(f"{result.computed} computed, {result.remaining} remaining")
            if not result.remaining or not result.computed:
                break
        progress = feature_progress(model_version=version)
        self.stdout.write(f"Features: {progress.text} computed for {version}.")
