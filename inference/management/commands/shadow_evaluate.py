"""Score a candidate model version on recently reviewed cases beside the active one (champion/challenger)."""

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from inference.selectors import model_version_get
from inference.shadow import shadow_evaluate


def _fmt(value, ci=None) -> str:
    if value is None:
        return "n/a"
    text = f"{value:.3f}"
    return f"{text} ({ci[0]:.3f}-{ci[1]:.3f})" if ci else text


class Command(BaseCommand):
    help = (
        "Score a registered candidate on the reviewed cases of the last --days days beside the active model, "
        "without touching stored predictions; activate_model then refuses a candidate whose sensitivity there "
        "is lower than the active model's by more than TELEDER_ACTIVATION_MAX_SENSITIVITY_DROP."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("name")
        parser.add_argument("version")
        parser.add_argument(
            "--days", type=int, default=90, help="reviewed cases of the last N days (default 90)"
        )

    def handle(self, *args, name: str, version: str, days: int, **options) -> None:
        candidate = model_version_get(name=name, version=version)
        if candidate is None:
            raise CommandError(f"No model {name} {version} is registered.")
        try:
            evaluation = shadow_evaluate(candidate=candidate, days=days)
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        rows = [evaluation.metrics["candidate"]]
        if "active" in evaluation.metrics:
            rows.insert(0, evaluation.metrics["active"])
        self.stdout.write(
            f"{evaluation.cases} reviewed cases of the last {days} days "
            f"({evaluation.metrics['skipped_cases']} skipped: images unreadable)"
        )
        self.stdout.write(
            f"{'model version':<28} {'malignant':>9} {'threshold':>9}  {'sensitivity (95% CI)':<22} "
            f"{'specificity (95% CI)':<22} {'AUC':>6} {'ECE':>6}"
        )
        for row in rows:
            self.stdout.write(
                f"{row['model_version']:<28} {row['positives']:>9} {row['threshold']:>9.4f}  "
                f"{_fmt(row['sensitivity'], row['sensitivity_ci95']):<22} "
                f"{_fmt(row['specificity'], row['specificity_ci95']):<22} {_fmt(row['auc']):>6} "
                f"{_fmt(row['ece']):>6}"
            )
