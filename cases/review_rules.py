"""The clinical consistency rules of a review: what a dermatologist may sign.

Pure functions (no database): ``cases.services.review_submit`` and ``review_correct`` call
:func:`check_review`, so the web form and the API refuse the same contradictions with the same messages.

- A malignant diagnosis of the vocabulary (melanoma, basal cell carcinoma, actinic keratosis /
  intraepithelial carcinoma) is malignant: ``malignant`` is derived from it, and a contradicting value is
  refused. Benign diagnoses derive "benign"; "other" needs an explicit call.
- A malignant lesion is never "reassure, no follow-up".
- Follow-up months belong to "follow-up" only: given with another management they are refused, not dropped.
- Unusual but legitimate combinations (a benign diagnosis called malignant, a malignant lesion only followed
  up, an urgent referral of a benign lesion) need a written justification, which is stored and printed.
- Agreement with the AI is derived, never chosen: the AI flag (risk at or above the model's threshold)
  against the dermatologist's malignant call.
"""

from dataclasses import dataclass, field

from django.core.exceptions import ValidationError

from cases.vocabulary import Diagnosis, Management

MALIGNANT_DIAGNOSES = frozenset({Diagnosis.MEL, Diagnosis.BCC, Diagnosis.AKIEC})
BENIGN_DIAGNOSES = frozenset({Diagnosis.NV, Diagnosis.BKL, Diagnosis.DF, Diagnosis.VASC})
# Neither: the dermatologist must say whether the lesion is malignant.
UNDETERMINED_DIAGNOSES = frozenset(Diagnosis.values) - MALIGNANT_DIAGNOSES - BENIGN_DIAGNOSES
FOLLOW_UP_MONTHS = (1, 60)
MIN_JUSTIFICATION_CHARS = 10

assert {Diagnosis.OTHER} == UNDETERMINED_DIAGNOSES, "every diagnosis code needs a malignancy rule"


@dataclass(frozen=True)
class CheckedReview:
    """A consistent review: the values to store, with what is unusual about it (needs the justification)."""

    diagnosis: str
    malignant: bool
    management: str
    follow_up_months: int | None
    justification: str
    unusual: tuple[str, ...] = field(default=())


def _label(diagnosis: str) -> str:
    return Diagnosis(diagnosis).label


def unusual_reasons(*, diagnosis: str, malignant: bool, management: str) -> tuple[str, ...]:
    """Legitimate but unusual combinations; each must be justified in writing."""
    reasons = []
    if malignant and diagnosis in BENIGN_DIAGNOSES:
        reasons.append(f"{_label(diagnosis)} is a benign diagnosis but the lesion is called malignant.")
    if malignant and management == Management.FOLLOW_UP:
        reasons.append("A malignant lesion is only followed up, not biopsied or referred.")
    if not malignant and management == Management.URGENT_REFERRAL:
        reasons.append("A benign lesion is referred urgently.")
    return tuple(reasons)


def check_review(
    *,
    diagnosis: str,
    malignant: bool | None,
    management: str,
    follow_up_months: int | None,
    justification: str = "",
) -> CheckedReview:
    """The review to store, or a ``ValidationError`` with one message per field that is contradictory.

    ``malignant=None`` derives the call from the diagnosis (refused for "other", which needs one).
    """
    errors: dict[str, list[str]] = {}
    if diagnosis not in Diagnosis.values:
        raise ValidationError({"diagnosis": "Choose a diagnosis from the list."})
    if management not in Management.values:
        raise ValidationError({"management": "Choose a management option."})
    justification = (justification or "").strip()

    if diagnosis in MALIGNANT_DIAGNOSES:
        if malignant is False:
            errors.setdefault("malignant", []).append(
                f"{_label(diagnosis)} is a malignant diagnosis: the lesion cannot be called benign. "
                "Change the diagnosis or the malignant call."
            )
        malignant = True
    elif malignant is None:
        if diagnosis in BENIGN_DIAGNOSES:
            malignant = False
        else:
            errors.setdefault("malignant", []).append(
                f"Say whether the lesion is malignant (the diagnosis '{_label(diagnosis)}' does not say)."
            )

    if malignant and management == Management.REASSURE:
        errors.setdefault("management", []).append(
            "A malignant lesion cannot be managed with 'Reassure, no follow-up'. "
            "Choose follow-up, biopsy / excision or urgent referral."
        )

    months = follow_up_months
    if management == Management.FOLLOW_UP:
        low, high = FOLLOW_UP_MONTHS
        try:
            months = None if months in (None, "") else int(months)
        except (TypeError, ValueError):
            months = None
        if months is None or not low <= months <= high:
            errors.setdefault("follow_up_months", []).append(
                f"Give the follow-up interval in months ({low}-{high})."
            )
    elif months not in (None, ""):
        errors.setdefault("follow_up_months", []).append(
            f"Follow-up months only go with 'Follow-up'; the management is "
            f"'{Management(management).label}'. Clear the months or choose follow-up."
        )
    else:
        months = None

    if errors:
        raise ValidationError(errors)
    unusual = unusual_reasons(diagnosis=diagnosis, malignant=bool(malignant), management=management)
    if unusual and len(justification) < MIN_JUSTIFICATION_CHARS:
        raise ValidationError(
            {
                "justification": [
                    "This combination is unusual: "
                    + " ".join(unusual)
                    + " Write why (at least 10 characters); the justification is recorded and printed."
                ]
            }
        )
    return CheckedReview(
        diagnosis=diagnosis,
        malignant=bool(malignant),
        management=management,
        follow_up_months=months,
        justification=justification,
        unusual=unusual,
    )


def ai_flagged(*, risk: float | None, threshold: float | None) -> bool | None:
    """Whether the AI flagged the lesion (risk at or above the model's threshold); None if not assessed."""
    if risk is None or threshold is None:
        return None
    return risk >= threshold


def agrees_with_ai(*, flagged: bool | None, malignant: bool) -> bool | None:
    """Agreement is the AI flag against the dermatologist's malignant call; None when the AI did not assess."""
    return None if flagged is None else flagged == malignant


def agreement_sentence(*, flagged: bool | None, malignant: bool) -> str:
    """What the report prints about the AI: what happened, not a choice the dermatologist clicked."""
    if flagged is None:
        return "The AI did not assess this lesion; the assessment is the dermatologist's alone."
    if flagged and malignant:
        return "The AI flagged this lesion; the dermatologist confirmed malignancy."
    if flagged:
        return "The AI flagged this lesion; the dermatologist did not confirm malignancy."
    if malignant:
        return "The AI did not flag this lesion; the dermatologist assessed it as malignant."
    return "The AI did not flag this lesion; the dermatologist also assessed it as benign."
