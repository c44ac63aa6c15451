"""Clinical vocabularies shared by models, forms, the API, training and inference.

Anatomical sites follow the ISIC ``anatom_site_general`` vocabulary; diagnoses the seven HAM10000 classes.
The pure inference/training code imports the same tuples from ``inference.preprocessing`` (no Django there).
"""

from django.db import models

from inference.preprocessing import SEXES, SITES
from inference.quality import REASONS as NOT_ASSESSED_REASONS


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


assert tuple(s for s in Site.values if s != Site.UNKNOWN) == SITES, "site vocabularies drifted apart"
assert tuple(s for s in Sex.values if s != Sex.UNKNOWN) == SEXES, "sex vocabularies drifted apart"


class Assessment(models.TextChoices):
    """The AI safety gate's outcome for one image (docs/inference.md, "AI safety gate")."""

    ASSESSED = "assessed", "Assessed by the AI"
    NOT_ASSESSED = "not_assessed", "AI could not assess"


class CaseAssessment(models.TextChoices):
    """The gate's outcome for a whole case: every image, some images, or no image assessed."""

    ASSESSED = "assessed", "Assessed by the AI"
    PARTIAL = "partial", "Partly assessed (some images could not be assessed)"
    NOT_ASSESSED = "not_assessed", "AI could not assess"


# Machine-readable reasons an image is not assessed -> a plain sentence for people.
NotAssessedReason = models.TextChoices("NotAssessedReason", [(key, key) for key in NOT_ASSESSED_REASONS])
