"""Fault 2 end to end: `manage.py demo` keeps serving while its broker is killed, restarts it (logged), and the
restarted broker still holds what was queued (append-only file under var/)."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
import redis

from teleder import embedded_redis
from tests.support.workers import ROOT, wait_for

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - our own local server
            return response.status
    except OSError:
        return 0


def test_the_demo_restarts_a_killed_broker_and_keeps_serving(tmp_path):
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL")}
    # No bundled model: registering it (hashing its files) is not what this test is about.
    env.update(
        TELEDER_VAR_DIR=str(tmp_path / "var"),
        TELEDER_BUNDLED_MODEL=str(tmp_path / "no-model"),
        TELEDER_TESTING="",
        PYTHONUNBUFFERED="1",
    )
    env.pop("TELEDER_TESTING")
    log = open(tmp_path / "demo.log", "wb")  # noqa: SIM115 - closed below
    demo = subprocess.Popen(
        [sys.executable, "manage.py", "demo", "--port", str(port), "--no-worker"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    socket_path = tmp_path / "var" / "redis.sock"
    url = f"http://127.0.0.1:{port}/healthz"
    try:
        wait_for(lambda: _status(url) == 200 or demo.poll() is not None, timeout_s=120, interval_s=0.5)
        assert demo.poll() is None, (tmp_path / "demo.log").read_text()[-3000:]
        client = redis.Redis(unix_socket_path=str(socket_path))
        client.lpush("inference", "queued-before-the-crash")
        time.sleep(1.2)  # appendfsync everysec
        pid = int(client.info("server")["process_id"])
        os.kill(pid, signal.SIGKILL)
        answers = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            answers.append(_status(url))
            time.sleep(0.2)
        assert set(answers) == {200}  # the web kept serving while the broker was down
        wait_for(lambda: embedded_redis.is_running(socket_path), timeout_s=30)
        restarted = redis.Redis(unix_socket_path=str(socket_path))
        assert int(restarted.info("server")["process_id"]) != pid
        assert restarted.lrange("inference", 0, -1) == [b"queued-before-the-crash"]
        text = (tmp_path / "demo.log").read_text(errors="replace")
        assert f"demo: broker (pid {pid}) exited with status -9" in text
        assert "demo: broker restarted" in text
    finally:
        demo.send_signal(signal.SIGTERM)
        try:
            demo.wait(timeout=30)
        except subprocess.TimeoutExpired:
            demo.kill()
        log.close()
        embedded_redis.shutdown(socket_path)
    assert not embedded_redis.is_running(socket_path)
