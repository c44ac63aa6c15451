"""Moved to tests/support/factories.py; this module stays so that tests written before the move still import."""

from tests.support.factories import *  # noqa: F403
