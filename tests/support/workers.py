"""Real Celery worker processes for integration tests, on this test run's database, media and broker."""

import os
import time
from pathlib import Path

from django.conf import settings

from teleder import workers

ROOT = Path(__file__).resolve().parents[2]


def worker_env(extra: dict | None = None) -> dict:
    """Environment for a child process that must share this test run's database, media and broker."""
    from django.db import connection

    env = dict(os.environ)
    env["TELEDER_VAR_DIR"] = str(settings.VAR_DIR)
    env["TELEDER_TESTING"] = "1"
    env["TELEDER_MEDIA_ROOT"] = str(settings.MEDIA_ROOT)
    env["TELEDER_MODEL_DIR"] = str(settings.TELEDER_MODEL_DIR)
    env["TELEDER_SIGNING_DIR"] = str(settings.TELEDER_SIGNING_DIR)
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        env["DATABASE_URL"] = f"sqlite:///{db['NAME']}"
    else:
        user = db.get("USER") or "postgres"
        host = db.get("HOST") or "127.0.0.1"
        port = db.get("PORT") or 5432
        env["DATABASE_URL"] = f"postgres://{user}@{host}:{port}/{db['NAME']}"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


class WorkerProcess(workers.WorkerProcess):
    """A real ``celery worker`` child process (the project's launcher, ``teleder.workers``) on this test run's
    database, media and broker: solo pool, one task at a time."""

    def __init__(
        self,
        log_path: Path,
        queues: str = "inference,default",
        extra_env: dict | None = None,
        extra_args: list[str] | None = None,
    ):
        super().__init__([], log_path=log_path)
        self.queues = queues
        self.extra_env = extra_env
        self.extra_args = extra_args or []

    def start(self, timeout_s: float = 60.0) -> "WorkerProcess":
        self.command = workers.worker_command(
            name=f"test-{time.monotonic_ns()}@%h",
            queues=self.queues,
            pool="solo",
            concurrency=1,
            extra_args=self.extra_args,
        )
        self.env = worker_env(self.extra_env)  # read now: a test may have changed settings since __init__
        return super().start(timeout_s=timeout_s)


def purge_queues() -> None:
    from teleder.celery import app

    with app.connection_for_write() as conn:
        for queue in ("inference", "default"):
            conn.default_channel.queue_purge(queue) if _queue_exists(conn, queue) else None


def queued(queue: str) -> int:
    """Messages waiting in ``queue`` on the broker."""
    from teleder.celery import app

    with app.connection_for_write() as conn:
        return conn.default_channel.client.llen(queue)


def _queue_exists(conn, queue: str) -> bool:
    try:
        conn.default_channel.queue_declare(queue=queue, passive=True)
        return True
    except Exception:  # noqa: BLE001
        return False


def wait_for(predicate, timeout_s: float = 60.0, interval_s: float = 0.2):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"condition not met within {timeout_s} s")
