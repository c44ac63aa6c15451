"""gunicorn as deployed (docker/Dockerfile.web): behind a proxy that speaks the PROXY protocol, REMOTE_ADDR is
the client's address, so the audit trail and the login lock-out see the real client; nobody else can set it."""

import contextlib
import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from axes.models import AccessAttempt

from tests.support.workers import ROOT, worker_env

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _http(port: int, request: bytes, *, proxy_from: str | None = None) -> tuple[int, dict, bytes]:
    """One raw HTTP/1.1 exchange, optionally preceded by a PROXY protocol v1 line naming the client."""
    prefix = f"PROXY TCP4 {proxy_from} 10.0.0.2 40000 443\r\n".encode() if proxy_from else b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(prefix + request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        key, _, value = line.partition(":")
        headers.setdefault(key.strip().lower(), []).append(value.strip())
    return int(lines[0].split()[1]), headers, body


@contextlib.contextmanager
def _running_gunicorn(tmp_path: Path, env: dict):
    """The web image's own gunicorn configuration on a local port; yields (port, log path)."""
    port = _free_port()
    log = (tmp_path / "gunicorn.log").open("wb")
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("gunicorn")), "-c", "docker/gunicorn.conf.py", "teleder.wsgi:application"],
        cwd=ROOT,
        env=worker_env(
            {"TELEDER_AXES_ENABLED": "1", "GUNICORN_BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": "1",
             "WEB_THREADS": "1", "PROXY_ALLOW_IPS": "127.0.0.1", "FORWARDED_ALLOW_IPS": "127.0.0.1", **env}
        ),
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while True:
        try:
            if (
                _http(port, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")[0]
                == 200
            ):
                break
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail((tmp_path / "gunicorn.log").read_text()[-2000:])
        time.sleep(0.2)
    try:
        yield port, tmp_path / "gunicorn.log"
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()


@pytest.fixture
def gunicorn(transactional_db, tmp_path):
    with _running_gunicorn(tmp_path, {}) as running:  # one process
        yield running


def _failed_login(port: int, *, proxy_from: str | None, extra_headers: str = "") -> int:
    status, headers, body = _http(
        port,
        b"GET /accounts/login/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        proxy_from=proxy_from,
    )
    assert status == 200
    cookie = next(c.split(";")[0] for c in headers["set-cookie"] if c.startswith("csrftoken="))
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', body).group(1).decode()
    form = f"csrfmiddlewaretoken={token}&username=clin&password=wrong-password".encode()
    request = (
        f"POST /accounts/login/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nCookie: {cookie}\r\n"
        f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(form)}\r\n{extra_headers}\r\n"
    ).encode() + form
    return _http(port, request, proxy_from=proxy_from)[0]


def test_client_address_comes_from_the_proxy_protocol(gunicorn, clinician):
    port, log = gunicorn
    assert _failed_login(port, proxy_from="203.0.113.9") == 200

    assert list(AccessAttempt.objects.values_list("username", "ip_address")) == [("clin", "203.0.113.9")]
    # The access log is JSON lines with the client's address and the request id.
    lines = [json.loads(x) for x in log.read_text().splitlines() if x.startswith('{"time"')]
    post = next(x for x in lines if x["message"] == "POST /accounts/login/ 200")
    assert post["client"] == "203.0.113.9"
    assert post["logger"] == "gunicorn.access"
    assert len(post["request_id"]) == 32


def test_forwarded_for_headers_are_not_trusted(gunicorn, clinician):
    assert (
        _failed_login(gunicorn[0], proxy_from=None, extra_headers="X-Forwarded-For: 198.51.100.77\r\n") == 200
    )

    assert list(AccessAttempt.objects.values_list("ip_address", flat=True)) == ["127.0.0.1"]


def test_only_the_allowed_proxy_may_send_the_proxy_protocol(tmp_path):
    """A connection from an address outside --proxy-allow-from that claims a client address is refused."""
    port = _free_port()
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("gunicorn")), "tests.deploy.echo_wsgi:application", "--bind",
         f"127.0.0.1:{port}", "--workers", "1", "--proxy-protocol", "auto", "--proxy-allow-from", "10.9.9.9",
         "--no-control-socket"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                plain = _http(port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        spoofed = _http(
            port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", proxy_from="203.0.113.9"
        )
    finally:
        process.terminate()
        process.wait(timeout=20)

    assert plain[0] == 200 and b"127.0.0.1" in plain[2]
    assert spoofed[0] == 403 and b"203.0.113.9" not in spoofed[2]


def _cache_url(broker_url: str) -> str:
    """A database of the test run's own Redis other than the broker's (clearing a cache flushes its database)."""
    if broker_url.startswith("redis+socket://"):
        return f"unix://{broker_url.removeprefix('redis+socket://')}?db=3"
    base, _, _ = broker_url.rpartition("/")
    return f"{base}/14"


def test_rate_limits_hold_across_web_processes_with_a_shared_cache(transactional_db, broker, tmp_path):
    """With CACHE_URL the login limit counts every request, whichever gunicorn process answers it."""
    import redis

    cache_url = _cache_url(broker)
    store = redis.Redis.from_url(cache_url)
    store.flushdb()
    env = {"WEB_CONCURRENCY": "3", "CACHE_URL": cache_url, "TELEDER_API_RATE_LOGIN": "4/min"}
    body = json.dumps({"username": "nobody", "password": "wrong"}).encode()
    request = (
        b"POST /api/v1/auth/login/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    try:
        with _running_gunicorn(tmp_path, env) as (port, _):
            statuses = [_http(port, request)[0] for _ in range(7)]
        assert statuses == [401] * 4 + [429] * 3, statuses
        # The counters are in the shared Redis, not in one process's memory.
        keys = [k.decode() for k in store.keys("*")]
        assert any("throttle_login" in k for k in keys), keys
    finally:
        store.flushdb()
