"""The README's configuration table must list every environment variable the settings read."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_setting_variable_is_documented():
    settings_src = (ROOT / "teleder" / "settings.py").read_text()
    read = set(re.findall(r'(?:os\.environ\.get|env_bool|env_list)\(\s*"([A-Z0-9_]+)"', settings_src))
    readme = (ROOT / "README.md").read_text()
    documented = set(re.findall(r"^\| `([A-Z0-9_]+)` \|", readme, flags=re.M))
    assert read, "no variables found: the pattern is wrong"
    assert read - documented == set(), f"undocumented: {sorted(read - documented)}"


def test_readme_starts_with_the_two_setup_commands():
    lines = (ROOT / "README.md").read_text().splitlines()
    block = "\n".join(lines[:6])
    assert "./bin/demo" in block and "./bin/test" in block
    assert "bin/test" in (ROOT / ".ci" / "run").read_text()
