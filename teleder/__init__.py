"""TeleDerm: teledermatology platform (Django project package)."""

from teleder.celery import app as celery_app

__all__ = ["celery_app"]
