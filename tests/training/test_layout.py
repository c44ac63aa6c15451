"""The training package stays a plain library: importing any of its modules pulls in neither Django nor
TensorFlow/Keras nor torch (those load inside the functions that need them)."""

import subprocess
import sys

MODULES = [
    "training.__main__",
    "training.cache",
    "training.calibrate",
    "training.data",
    "training.device",
    "training.ensemble",
    "training.evaluate",
    "training.export",
    "training.fit",
    "training.fit.batches",
    "training.fit.callbacks",
    "training.fit.config",
    "training.fit.run",
    "training.metrics",
    "training.model_card",
    "training.package",
]


def test_importing_training_loads_neither_django_nor_tensorflow_nor_torch():
    code = (
        "import importlib, sys\n"
        f"for name in {MODULES!r}: importlib.import_module(name)\n"
        "print(sorted(m for m in ('django', 'keras', 'tensorflow', 'torch') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
