"""`manage.py demo` supervises its processes: teleder.supervisor with real child processes, and the embedded
broker's append-only file."""

import signal
import subprocess
import sys
import time

import redis

from teleder import embedded_redis
from teleder.supervisor import Service, Supervisor
from tests.support.workers import wait_for


def sleeper() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])


def test_a_dead_service_is_restarted_with_back_off_and_logged_while_the_others_keep_running():
    lines: list[str] = []
    worker, web = Service("worker", sleeper), Service("web", sleeper)
    supervisor = Supervisor([worker, web], log=lines.append, backoff_initial_s=0.2, backoff_max_s=0.8)
    supervisor.start_all()
    try:
        web_pid = web.process.pid
        delays = []
        for _ in range(4):
            old = worker.process
            old.send_signal(signal.SIGKILL)
            old.wait()
            died = time.monotonic()
            wait_for(
                lambda old=old: (supervisor.check() or True) and worker.process is not old, interval_s=0.02
            )
            delays.append(time.monotonic() - died)
            assert worker.process.poll() is None
        assert web.process.pid == web_pid and web.process.poll() is None  # never touched
        # 0.2, 0.4, 0.8, 0.8 s: doubling, capped.
        assert delays[0] >= 0.2 and delays[1] >= 0.4 and delays[2] >= 0.8 and delays[3] >= 0.8, delays
        assert delays[3] < 2.0, delays
        assert sum("worker (pid" in line and "exited with status -9" in line for line in lines) == 4
        assert [line for line in lines if "restarted" in line][-1].endswith("restart 4)")
    finally:
        supervisor.stop_all(timeout_s=5)
    assert worker.process.poll() is not None and web.process.poll() is not None


def test_the_embedded_broker_keeps_queued_messages_across_a_restart(tmp_path):
    socket_path = tmp_path / "redis.sock"
    process = embedded_redis.start(socket_path)
    try:
        client = redis.Redis(unix_socket_path=str(socket_path))
        client.lpush("inference", "message-1", "message-2")
        time.sleep(1.2)  # appendfsync everysec: on disk within a second, even if the server is then killed
        process.kill()
        process.wait()
        process = embedded_redis.start(socket_path)
        assert sorted(redis.Redis(unix_socket_path=str(socket_path)).lrange("inference", 0, -1)) == [
            b"message-1",
            b"message-2",
        ]
        assert (tmp_path / embedded_redis.AOF_NAME).exists() or any(tmp_path.glob("appendonlydir*"))
    finally:
        embedded_redis.stop(process)
