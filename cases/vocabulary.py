"""Clinical vocabularies shared by models, forms, the API, training and inference.

Anatomical sites follow the ISIC ``anatom_site_general`` vocabulary; diagnoses the seven HAM10000 classes.
The pure inference/training code has the same tuples in ``inference.preprocessing`` (no Django there);
tests/test_architecture.py checks that the two agree, so ``cases`` need not import ``inference``.
"""

from django.db import models


class Role(models.TextChoices):
    CLINICIAN = "clinician", "Clinician"
    DERMATOLOGIST = "dermatologist", "Dermatologist"
    ADMIN = "admin", "Administrator"


class Sex(models.TextChoices):
    MALE = "male", "Male"
    FEMALE = "female", "Female"
    UNKNOWN = "unknown", "Unknown"


class Site(models.TextChoices):
    HEAD_NECK = "head/neck", "Head / neck"
    UPPER_EXTREMITY = "upper extremity", "Upper extremity"
    LOWER_EXTREMITY = "lower extremity", "Lower extremity"
    TORSO = "torso", "Torso"
    PALMS_SOLES = "palms/soles", "Palms / soles"
    ORAL_GENITAL = "oral/genital", "Oral / genital"
    UNKNOWN = "unknown", "Unknown"


class Priority(models.TextChoices):
    ROUTINE = "routine", "Routine"
    URGENT = "urgent", "Urgent"


class Diagnosis(models.TextChoices):
    MEL = "mel", "Melanoma"
    NV = "nv", "Melanocytic nevus"
    BCC = "bcc", "Basal cell carcinoma"
    AKIEC = "akiec", "Actinic keratosis / intraepithelial carcinoma"
    BKL = "bkl", "Benign keratosis"
    DF = "df", "Dermatofibroma"
    VASC = "vasc", "Vascular lesion"
    OTHER = "other", "Other"


class Management(models.TextChoices):
    REASSURE = "reassure", "Reassure, no follow-up"
    FOLLOW_UP = "follow_up", "Follow-up"
    BIOPSY = "biopsy", "Biopsy / excision"
    URGENT_REFERRAL = "urgent_referral", "Urgent referral"


class RiskBand(models.TextChoices):
    LOW = "low", "Low"
    MEDIUM = "medium", "Medium"
    HIGH = "high", "High"


class Assessment(models.TextChoices):
    """The AI safety gate's outcome for one image (docs/inference.md, "AI safety gate")."""

    ASSESSED = "assessed", "Assessed by the AI"
    NOT_ASSESSED = "not_assessed", "AI could not assess"


class CaseAssessment(models.TextChoices):
    """The gate's outcome for a whole case: every image, some images, or no image assessed."""

    ASSESSED = "assessed", "Assessed by the AI"
    PARTIAL = "partial", "Partly assessed (some images could not be assessed)"
    NOT_ASSESSED = "not_assessed", "AI could not assess"


# Machine-readable reasons an image is not assessed -> a plain sentence for people. The worker's gate
# (inference.quality) uses the same keys and sentences; tests/test_architecture.py keeps the two equal.
NOT_ASSESSED_REASONS: dict[str, str] = {
    "blurred": "The image is out of focus or blurred: the lesion's detail cannot be seen.",
    "too_dark": "The image is too dark: most of the lesion is in shadow.",
    "overexposed": "The image is overexposed: most of the lesion is burnt out to white.",
    "too_small": "The image is too small for the model to assess.",
    "extreme_aspect_ratio": "The image is a very long strip (extreme aspect ratio), not a lesion photograph.",
    "not_dermoscopy": "The image does not look like dermoscopy of a skin lesion.",
}
RESUBMIT_HINT = "Please take a new, sharp, well-lit dermoscopic image of the lesion and add it to the case."
NotAssessedReason = models.TextChoices("NotAssessedReason", [(key, key) for key in NOT_ASSESSED_REASONS])


def explain_not_assessed(reasons: list[str]) -> str:
    """One plain sentence (or a few) for people, from the gate's machine-readable reasons."""
    if not reasons:
        return "The image was assessed by the AI."
    return " ".join(NOT_ASSESSED_REASONS.get(reason, reason) for reason in reasons) + " " + RESUBMIT_HINT
