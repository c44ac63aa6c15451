"""Every project app Django loads is in every image: copied by each Dockerfile and let through .dockerignore
(a new app missing from them fails only at the images' build or start, e.g. collectstatic)."""

from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = ("Dockerfile.web", "Dockerfile.worker", "Dockerfile.worker-gpu")


def project_apps() -> list[str]:
    names = {entry.split(".")[0] for entry in settings.INSTALLED_APPS}
    return sorted(n for n in names if (ROOT / n / "__init__.py").is_file())


def test_the_project_apps_are_found():
    assert {"teleder", "cases", "inference", "similarity"} <= set(project_apps())


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_every_dockerfile_copies_every_project_app(dockerfile):
    lines = (ROOT / "docker" / dockerfile).read_text().splitlines()
    missing = [app for app in project_apps() if f"COPY {app} {app}" not in lines]
    assert missing == [], f"docker/{dockerfile} does not copy {missing}"


def test_the_build_context_lets_every_project_app_through():
    rules = (ROOT / ".dockerignore").read_text().splitlines()
    assert [app for app in project_apps() if f"!{app}/**" not in rules] == []
