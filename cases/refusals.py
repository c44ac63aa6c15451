"""One catalogue of the refusals that the web pages and the API both give, so that they say the same thing.

Each entry is a format string; the web form and the API error use the same text (and, where the web answers
with a status code at all, the same status).
"""

# Login lock-out (django-axes with cases.lockout.LockoutHandler).
LOCKED_USERNAME_AT_ADDRESS = (
    "Too many failed logins for this username from your network address. Logging in as this user from here "
    "is paused for {minutes} minutes; other users, and this user on another network, can still log in. "
    "If you have forgotten your password, reset it."
)
LOCKED_ADDRESS = (
    "Too many failed logins from your network address. Logging in from it is paused for {minutes} minutes."
)

# Uploads. The web form and the API give the same text; an oversized upload is 413 on both.
TOO_MANY_IMAGES = "A case has at most {limit} images."
IMAGE_TOO_LARGE = "The file is larger than {limit}."
CASE_TOO_LARGE = "The images of one case together exceed the size limit."
REQUEST_TOO_LARGE = "The request is larger than {limit}."


def megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.3g} MB"


def image_too_large(limit_bytes: int) -> str:
    return IMAGE_TOO_LARGE.format(limit=megabytes(limit_bytes))


def is_too_large(message: str) -> bool:
    """Whether a refusal's text is one of the size refusals (so that the web answers 413 like the API)."""
    return message.startswith(IMAGE_TOO_LARGE.split("{")[0]) or message in (CASE_TOO_LARGE,)
