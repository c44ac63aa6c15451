"""Record an AI result on a case without running a model: through the declared interface the inference
worker uses (``cases.services.analysis``), with chosen probabilities."""

from collections.abc import Sequence

from cases.models import Case
from cases.services.analysis import ImageResult, case_claim_for_analysis, case_record_analysis


def record_probabilities(
    case: Case,
    model_version,
    probabilities: Sequence[float],
    *,
    members: Sequence[str] = ("member0", "member1"),
    spread: float = 0.0,
    latency_ms: float = 1.0,
) -> Case:
    """Claim ``case`` and record one probability per image (in image order). Members get the probability
    minus and plus ``spread``, alternately."""
    case_claim_for_analysis(case_id=case.pk)
    images = list(case.images.order_by("position"))
    results = [
        ImageResult(
            image_id=image.pk,
            probability=p,
            member_probabilities={name: p + (spread if i % 2 else -spread) for i, name in enumerate(members)},
            latency_ms=latency_ms,
        )
        for image, p in zip(images, probabilities, strict=True)
    ]
    return case_record_analysis(case_id=case.pk, model_version=model_version, results=results)
