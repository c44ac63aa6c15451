"""Export the audit trail as CSV (to a file or standard output), with optional filters."""

import contextlib
import csv

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from cases.audit_export import audit_rows
from cases.models import AuditEvent
from cases.selectors import audit_events_filter


class Command(BaseCommand):
    help = "Export the audit trail as CSV. Dates are YYYY-MM-DD (whole days, UTC) or ISO date-times."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--output", "-o", help="File to write (default: standard output).")
        parser.add_argument("--since", help="First day or moment to include.")
        parser.add_argument("--until", help="Last day (inclusive) or moment (exclusive) to include.")
        parser.add_argument("--action", default="", help="Only this action, e.g. case.view.")
        parser.add_argument("--object-type", default="", help="Only this object type, e.g. case.")
        parser.add_argument("--object-id", default="", help="Only this object id.")
        parser.add_argument("--organization", default="", help="Only this organization (slug).")

    def handle(self, *args, **options) -> None:
        try:
            events = audit_events_filter(
                AuditEvent.objects.all(),
                since=options["since"],
                until=options["until"],
                action=options["action"],
                object_type=options["object_type"],
                object_id=options["object_id"],
                organization=options["organization"],
            ).order_by("created_at", "id")
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        try:
            with contextlib.ExitStack() as stack:
                handle = (
                    stack.enter_context(open(options["output"], "w", newline="", encoding="utf-8"))
                    if options["output"]
                    else self.stdout
                )
                writer = csv.writer(handle)
                count = -1  # the header
                for row in audit_rows(events.iterator(chunk_size=2000)):
                    writer.writerow(row)
                    count += 1
        except OSError as exc:
            raise CommandError(f"Cannot write {options['output']}: {exc.strerror}.") from None
        if options["output"]:
            self.stderr.write(f"Wrote {count} audit events to {options['output']}.")
