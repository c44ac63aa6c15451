"""Staged upload images: valid images of a failed web submission, kept under ``staging/<user id>/`` so that
the clinician does not pick them again. They are patient images outside any case, so they never outlive
their purpose: the form deletes them once used or replaced, and this sweep deletes any older than an hour."""

import logging
from datetime import timedelta

from django.core.files.storage import default_storage
from django.utils import timezone

logger = logging.getLogger(__name__)

STAGING_ROOT = "staging/"
STAGED_MAX_AGE = timedelta(hours=1)


def staged_images_sweep(*, max_age: timedelta = STAGED_MAX_AGE, now=None) -> int:
    """Delete staged images older than ``max_age`` (every user's); returns how many were removed."""
    now = now or timezone.now()
    removed = 0
    try:
        users, _ = default_storage.listdir(STAGING_ROOT)
    except (FileNotFoundError, NotADirectoryError):
        return 0
    for user_dir in users:
        prefix = f"{STAGING_ROOT}{user_dir}/"
        _, files = default_storage.listdir(prefix)
        for name in files:
            path = prefix + name
            try:
                modified = default_storage.get_modified_time(path)
            except (FileNotFoundError, NotImplementedError):
                continue
            if timezone.is_naive(modified):
                modified = timezone.make_aware(modified)
            if now - modified > max_age:
                default_storage.delete(path)
                removed += 1
    if removed:
        logger.info("removed %d staged upload image(s) older than %s", removed, max_age)
    return removed
