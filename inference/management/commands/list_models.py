from django.core.management.base import BaseCommand

from inference.selectors import model_versions


class Command(BaseCommand):
    help = "List registered model versions; the active one is marked with '*'."

    def handle(self, *args, **options) -> None:
        rows = [
            (
                "*" if v.status == "active" else "",
                v.name,
                v.version,
                v.status,
                v.task,
                f"{v.threshold:.3f}",
                str(len(v.manifest.get("members", []))),
                f"{v.metrics['auc']:.3f}" if isinstance(v.metrics.get("auc"), int | float) else "-",
                f"{v.created_at:%Y-%m-%d %H:%M}",
                f"{v.activated_at:%Y-%m-%d %H:%M}" if v.activated_at else "-",
            )
            for v in model_versions()
        ]
        if not rows:
            self.stdout.write("No model versions are registered. Use manage.py register_model PATH.")
            return
        header = (
            "",
            "NAME",
            "VERSION",
            "STATUS",
            "TASK",
            "THRESHOLD",
            "MEMBERS",
            "AUC",
            "REGISTERED",
            "ACTIVATED",
        )
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        for row in [header, *rows]:
            self.stdout.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
