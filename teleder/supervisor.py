"""A small process supervisor for `manage.py demo`: restarts a child that dies, with back-off, and logs it.

Each service is a name and a function that starts its process. A service that exits is started again after
``backoff_initial_s`` seconds, doubling on every further exit up to ``backoff_max_s``; a service that ran for
``stable_after_s`` seconds starts again from the initial delay. The other services keep running meanwhile
(the web server keeps serving while a worker restarts).
"""

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Service:
    name: str
    start: Callable[[], subprocess.Popen | None]
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    failures: int = 0  # consecutive exits without a stable run
    restart_at: float | None = None
    restarts: int = 0


class Supervisor:
    def __init__(
        self,
        services: list[Service],
        log: Callable[[str], None],
        *,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 30.0,
        stable_after_s: float = 60.0,
    ):
        self.services = services
        self.log = log
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.stable_after_s = stable_after_s

    def _start(self, service: Service) -> None:
        service.process = service.start()
        service.started_at = time.monotonic()
        service.restart_at = None

    def start_all(self) -> None:
        for service in self.services:
            self._start(service)

    def delay_s(self, failures: int) -> float:
        return min(self.backoff_initial_s * 2 ** max(0, failures - 1), self.backoff_max_s)

    def check(self) -> None:
        """Notice exited services and restart those whose back-off is over. Call it about twice a second."""
        now = time.monotonic()
        for service in self.services:
            process = service.process
            if service.restart_at is None and process is not None and process.poll() is not None:
                ran_s = now - service.started_at
                service.failures = 1 if ran_s >= self.stable_after_s else service.failures + 1
                delay = self.delay_s(service.failures)
                service.restart_at = now + delay
                self.log(
                    f"{service.name} (pid {process.pid}) exited with status {process.returncode} after "
                    f"{ran_s:.0f} s; restarting it in {delay:.0f} s"
                )
            if service.restart_at is not None and now >= service.restart_at:
                try:
                    self._start(service)
                except Exception as exc:  # noqa: BLE001 - try again later, never take the others down
                    service.failures += 1
                    delay = self.delay_s(service.failures)
                    service.restart_at = now + delay
                    self.log(f"{service.name} could not be restarted ({exc}); trying again in {delay:.0f} s")
                    continue
                service.restarts += 1
                pid = service.process.pid if service.process is not None else "?"
                self.log(f"{service.name} restarted (pid {pid}, restart {service.restarts})")

    def stop_all(self, timeout_s: float = 15.0) -> None:
        """Stop in reverse start order (the web first, the broker last)."""
        for service in reversed(self.services):
            process = service.process
            if process is None or process.poll() is not None:
                continue
            process.terminate()
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
