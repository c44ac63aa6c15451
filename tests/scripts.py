"""Moved to tests/support/scripts.py; this module stays so that tests written before the move still import."""

from tests.support.scripts import *  # noqa: F403
