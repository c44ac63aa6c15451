"""The one way this project starts a Celery worker as a child process: the demo, the tests and the
benchmarks all build the command line with ``worker_command`` and run it with ``WorkerProcess``.

Plain Python (no Django import): benchmarks use it before Django is set up.
"""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Self

ROOT = Path(__file__).resolve().parent.parent
QUIET = ("gossip", "mingle", "heartbeat")  # Celery's worker-to-worker chatter: off where one worker runs


def worker_command(
    *,
    name: str,
    queues: str = "inference,default",
    pool: str | None = None,
    concurrency: int | None = None,
    loglevel: str = "info",
    without: Iterable[str] = QUIET,
    beat_schedule: Path | None = None,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """``celery -A teleder worker`` for ``queues``, named ``name`` (e.g. ``demo@%h``).

    ``pool``/``concurrency`` default to Celery's (prefork, one process per core); ``without`` turns off
    gossip, mingle and event heartbeats; ``beat_schedule`` also runs Celery beat (the sweepers) in the
    worker, keeping its schedule in that file.
    """
    command = [sys.executable, "-m", "celery", "-A", "teleder", "worker", "-Q", queues]
    if pool:
        command += ["-P", pool]
    if concurrency is not None:
        command += ["-c", str(concurrency)]
    if beat_schedule is not None:
        command += ["-B", "-s", str(beat_schedule)]
    command += [f"--without-{part}" for part in without]
    command += ["-l", loglevel, "-n", name, *extra_args]
    return command


class WorkerProcess:
    """A worker child process: start it (and wait until it says it is ready), read its log, stop it."""

    def __init__(
        self,
        command: Sequence[str],
        *,
        log_path: Path | None = None,
        env: Mapping[str, str] | None = None,
        cwd: Path = ROOT,
        new_session: bool = False,
    ):
        self.command = list(command)
        self.log_path = log_path
        self.env = dict(env) if env is not None else dict(os.environ)
        self.cwd = cwd
        self.new_session = new_session
        self.process: subprocess.Popen | None = None
        self._log_file: IO[bytes] | None = None

    def start(self, *, wait_ready: bool = True, timeout_s: float = 60.0) -> Self:
        """Start the worker; with ``wait_ready`` (needs ``log_path``) return once its log says ``ready.``.
        RuntimeError, with the end of the log, when it exits or is not ready in time."""
        if self.log_path is not None:
            self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the child's lifetime
        output = self._log_file if self._log_file is not None else None
        self.process = subprocess.Popen(
            self.command,
            cwd=self.cwd,
            env=self.env,
            stdout=output,
            stderr=subprocess.STDOUT if output is not None else None,
            start_new_session=self.new_session,
        )
        if wait_ready and self.log_path is not None:
            self._wait_ready(timeout_s)
        return self

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if " ready." in self.log():
                return
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited: {self.log()[-3000:]}")
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"worker not ready after {timeout_s:.0f} s: {self.log()[-3000:]}")

    def poll(self) -> int | None:
        return self.process.poll() if self.process else None

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 20.0) -> None:
        """Send ``sig`` (a warm shutdown by default) and wait; kill it if it does not exit in time."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def peak_rss_mb(self) -> float:
        """Peak resident memory (VmHWM, Linux) of the worker and its pool children, summed: an upper bound,
        shared pages count once per process."""
        pids = [self.process.pid, *_children(self.process.pid)] if self.process else []
        return sum(_peak_rss_mb(pid) for pid in pids)

    def child_peak_rss_mb(self) -> float:
        """Peak resident memory of the largest pool child (the one holding the model), in MB."""
        children = _children(self.process.pid) if self.process else []
        return max((_peak_rss_mb(pid) for pid in children), default=0.0)


def _children(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in children.read_text().split()] if children.exists() else []


def _peak_rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0
