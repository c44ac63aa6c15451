"""Template tags of the AI service, for pages that other apps render (the administrator's start page)."""

from django import template

from inference.models import ModelVersion
from inference.selectors import active_model_version

register = template.Library()


@register.simple_tag
def active_model() -> ModelVersion | None:
    """``{% active_model as version %}``: the active model version, or None."""
    return active_model_version()
