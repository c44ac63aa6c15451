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
