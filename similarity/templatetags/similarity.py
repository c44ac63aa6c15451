"""Template tags that put the similarity library on pages owned by other apps (the case and review pages, the
model page), so that those apps import nothing from here: their templates include ours."""

from django import template

from inference.models import ModelVersion
from similarity.search import similar_for_case
from similarity.selectors import SimilarResult, case_for_similarity, feature_progress

register = template.Library()


@register.simple_tag(takes_context=True)
def similar_lesions(context, case) -> SimilarResult | None:
    """The similar confirmed lesions of ``case``'s images, for the signed-in reader (None if not visible)."""
    request = context.get("request")
    if request is None or case is None:
        return None
    visible = case_for_similarity(user=request.user, case_id=case.pk)
    return similar_for_case(visible) if visible is not None else None


@register.simple_tag
def library_progress(version: ModelVersion):
    """How much of the library has features under ``version``."""
    return feature_progress(model_version=version)
