"""`manage.py demo`: the whole platform on one machine with nothing to install.

Migrates the database, creates demo users, registers the bundled model, starts the embedded Redis (with an
append-only file under var/), a Celery worker, Celery beat (the sweeper schedule) and the web server, prints the
URL and logins, and stops everything on Ctrl-C. It supervises its processes: one that dies is restarted with
back-off (1, 2, 4 ... 30 s) and logged, while the others keep running.
"""

import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from cases.demo import seed_demo
from teleder import embedded_redis
from teleder.supervisor import Service, Supervisor
from teleder.workers import worker_command

ROOT = Path(settings.BASE_DIR)
logger = logging.getLogger(__name__)


def _worker() -> list[str]:
    # prefork, so that task time limits are enforced
    return worker_command(name="demo@%h", pool="prefork", concurrency=1, without=())


def _beat() -> list[str]:
    schedule = str(settings.VAR_DIR / "celerybeat-schedule")
    return [sys.executable, "-m", "celery", "-A", "teleder", "beat", "-s", schedule, "-l", "info"]


def _web(host: str, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "teleder.wsgi",
        "-b",
        f"{host}:{port}",
        "-w",
        "2",
        "--threads",
        "4",
        "--access-logfile",
        "-",
        "--graceful-timeout",
        "5",
        # Under var/, not ~/.gunicorn/: two demos on one host must not share a control socket.
        "--control-socket",
        str(settings.VAR_DIR / "gunicorn.ctl"),
    ]


class Command(BaseCommand):
    help = "Run the TeleDerm demo: database, demo users, bundled model, broker, worker and web server."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1", help="Address to serve on (default 127.0.0.1).")
        parser.add_argument("--port", type=int, default=8000, help="Port to serve on (default 8000).")
        parser.add_argument("--setup-only", action="store_true", help="Prepare the database and exit.")
        parser.add_argument("--no-worker", action="store_true", help="Do not start a Celery worker.")

    def handle(self, *args, host: str, port: int, setup_only: bool, no_worker: bool, **options):
        started = time.monotonic()
        self.stdout.write("Preparing the database ...")
        call_command("migrate", interactive=False, verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        logins = seed_demo()
        self._register_model()
        self._init_signing()
        if setup_only:
            self._print_logins(logins)
            return

        env = dict(os.environ, DJANGO_SECRET_KEY=settings.SECRET_KEY, PYTHONUNBUFFERED="1")
        env.setdefault("TELEDER_SITE_URL", f"http://{host}:{port}")
        stopping = False

        def stop(*_):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        services = []
        if settings.EMBEDDED_REDIS:
            services.append(Service("broker", lambda: embedded_redis.start(settings.EMBEDDED_REDIS_SOCKET)))
        if not no_worker:
            services.append(Service("worker", lambda: self._spawn(_worker(), env)))
            services.append(Service("beat", lambda: self._spawn(_beat(), env)))
        services.append(Service("web", lambda: self._spawn(_web(host, port), env)))
        supervisor = Supervisor(services, log=self._log)
        try:
            supervisor.start_all()
            if settings.EMBEDDED_REDIS:
                self.stdout.write(
                    f"Embedded Redis on {settings.EMBEDDED_REDIS_SOCKET} (append-only file in var/)"
                )
            url = f"http://{host}:{port}/"
            self._wait_for(url + "healthz", [services[-1]])
            self._print_logins(logins)
            self.stdout.write(
                self.style.SUCCESS(
                    f"TeleDerm is running at {url} (ready in {time.monotonic() - started:.1f} s). Ctrl-C stops it."
                )
            )
            # Supervise: a process that dies is restarted with back-off while the others keep running.
            while not stopping:
                supervisor.check()
                time.sleep(0.5)
        finally:
            self.stdout.write("Stopping ...")
            supervisor.stop_all()
            self.stdout.write("Stopped.")

    def _spawn(self, argv: list[str], env: dict) -> subprocess.Popen:
        return subprocess.Popen(argv, cwd=ROOT, env=env, start_new_session=True)

    def _log(self, message: str) -> None:
        logger.warning("demo: %s", message)

    def _wait_for(self, url: str, services: list[Service], timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                # Our own server's http:// URL, built above: no user-supplied scheme.
                with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310  # nosec B310
                    if response.status == 200:
                        return
            except OSError:
                pass
            if any(svc.process is not None and svc.process.poll() is not None for svc in services):
                raise CommandError("The web server failed to start; see the output above.")
            time.sleep(0.3)
        raise CommandError(f"The web server did not answer at {url} within {timeout_s:.0f} s.")

    def _register_model(self) -> None:
        try:
            from inference.registry import register_bundled_model
        except ImportError:
            self.stdout.write(
                self.style.WARNING("Model registry not available; cases will wait for a model.")
            )
            return
        version = register_bundled_model()
        if version is None:
            self.stdout.write(
                self.style.WARNING(
                    f"No bundled model at {settings.TELEDER_BUNDLED_MODEL}; register one with "
                    "`manage.py register_model PATH --activate`."
                )
            )
        else:
            self.stdout.write(f"Model: {version} ({version.status})")

    def _init_signing(self) -> None:
        try:
            call_command("init_signing_ca", verbosity=0)
        except CommandError as exc:
            self.stdout.write(f"Signing CA: {exc}")
        except Exception as exc:  # noqa: BLE001 - the command may not exist in a partial install
            self.stdout.write(self.style.WARNING(f"Signing CA not initialised: {exc}"))

    def _print_logins(self, logins) -> None:
        self.stdout.write("\nDemo logins (local demo only):")
        self.stdout.write(f"  {'username':<15} {'password':<26} {'role':<15} organizations")
        for login in logins:
            self.stdout.write(
                f"  {login.username:<15} {login.password:<26} {login.role:<15} {login.organizations}"
            )
        self.stdout.write("")
