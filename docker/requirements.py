"""Print the runtime requirements from pyproject.toml, one per line, so images install dependencies in a cached
layer before the code is copied. ``--without NAME`` drops a requirement (the GPU image swaps onnxruntime)."""

import argparse
import re
import tomllib
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("pyproject", type=Path)
parser.add_argument("--extra", action="append", default=[])
parser.add_argument("--without", action="append", default=[])
args = parser.parse_args()
project = tomllib.loads(args.pyproject.read_text())["project"]
requirements = list(project["dependencies"])
for extra in args.extra:
    requirements += project["optional-dependencies"][extra]
for requirement in requirements:
    name = re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0].lower()
    if name not in {w.lower() for w in args.without}:
        print(requirement)
