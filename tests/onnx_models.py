"""Moved to tests/support/onnx_models.py; this module stays so that tests written before the move still import."""

from tests.support.onnx_models import *  # noqa: F403
