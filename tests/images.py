"""Moved to tests/support/images.py; this module stays so that tests written before the move still import."""

from tests.support.images import *  # noqa: F403
