"""The ISIC Archive metadata vocabulary (the ``isic-metadata`` package, the Archive's own schema) mapped to and
from TeleDerm's stored codes.

Pure (no Django): the case export and training's data loader both use it. TeleDerm keeps its stored codes (the
model's metadata input is built on them, ``inference.preprocessing.SITES``); these tables translate them, and
every ISIC value named here is checked against the package's enums when the module is imported, so a change
of the ISIC vocabulary fails loudly instead of producing rows the Archive would reject.
"""

from __future__ import annotations

from dataclasses import dataclass

from isic_metadata.anatom_site_hierarchical import AnatomSiteEnum
from isic_metadata.diagnosis_hierarchical import DiagnosisEnum
from isic_metadata.fields import AnatomSiteGeneralEnum, LegacyDxEnum
from isic_metadata.metadata import MetadataRow

from inference.preprocessing import SITES

HAM_CLASSES = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
UNKNOWN_SITE = "unknown"

# Stored site -> (ISIC anatom_site_general, ISIC hierarchical anatom_site). ISIC's general vocabulary splits the
# torso into anterior/posterior/lateral, which TeleDerm does not record: a torso lesion is "Trunk" in the
# hierarchical field and blank in the general one. palms/soles and oral/genital have no hierarchical match.
SITE_TO_ISIC: dict[str, tuple[str | None, str | None]] = {
    "head/neck": ("head/neck", "Head and neck"),
    "upper extremity": ("upper extremity", "Upper extremity"),
    "lower extremity": ("lower extremity", "Lower extremity"),
    "torso": (None, "Trunk"),
    "palms/soles": ("palms/soles", None),
    "oral/genital": ("oral/genital", None),
    UNKNOWN_SITE: (None, None),
}
# Every ISIC general site -> the stored site (built from the package's enum; the check below covers it all).
ISIC_GENERAL_TO_SITE: dict[str, str] = {
    member.value: ("torso" if member.value.endswith("torso") else member.value)
    for member in AnatomSiteGeneralEnum
}
# Top level of the hierarchical site -> stored site, where it is unambiguous.
ISIC_SITE_1_TO_SITE = {
    "Head and neck": "head/neck",
    "Upper extremity": "upper extremity",
    "Lower extremity": "lower extremity",
    "Trunk": "torso",
}

# Stored diagnosis -> the ISIC hierarchical diagnosis; akiec by the review's malignant flag, other by level 1.
DIAGNOSIS_TO_ISIC: dict[str, str] = {
    "mel": "Malignant:Malignant melanocytic proliferations (Melanoma)",
    "nv": "Benign:Benign melanocytic proliferations:Nevus",
    "bcc": "Malignant:Malignant adnexal epithelial proliferations - Follicular:Basal cell carcinoma",
    "akiec": "Indeterminate:Indeterminate epidermal proliferations:Solar or actinic keratosis",
    "bkl": "Benign:Benign epidermal proliferations",
    "df": "Benign:Benign soft tissue proliferations - Fibro-histiocytic:Dermatofibroma",
    "vasc": "Benign:Benign soft tissue proliferations - Vascular",
}
AKIEC_MALIGNANT = "Malignant:Malignant epidermal proliferations:Squamous cell carcinoma in situ"

# ISIC hierarchical diagnosis (by prefix, most specific first) -> HAM10000 class, for training.
_ISIC_PREFIX_TO_HAM: tuple[tuple[str, str], ...] = (
    ("Malignant:Malignant melanocytic proliferations (Melanoma)", "mel"),
    ("Benign:Benign melanocytic proliferations:Nevus", "nv"),
    ("Malignant:Malignant adnexal epithelial proliferations - Follicular:Basal cell carcinoma", "bcc"),
    ("Indeterminate:Indeterminate epidermal proliferations:Solar or actinic keratosis", "akiec"),
    ("Malignant:Malignant epidermal proliferations:Squamous cell carcinoma in situ", "akiec"),
    ("Benign:Benign epidermal proliferations:Seborrheic keratosis", "bkl"),
    ("Benign:Benign epidermal proliferations:Pigmented benign keratosis", "bkl"),
    ("Benign:Benign epidermal proliferations:Solar lentigo", "bkl"),
    ("Benign:Benign epidermal proliferations:Lichen planus like keratosis", "bkl"),
    ("Benign:Benign soft tissue proliferations - Fibro-histiocytic:Dermatofibroma", "df"),
    ("Benign:Benign soft tissue proliferations - Vascular", "vasc"),
    ("Benign:Benign melanocytic proliferations", "nv"),
    ("Benign:Benign epidermal proliferations", "bkl"),
)
# The legacy single-value ``diagnosis`` of older ISIC downloads (LegacyDxEnum) -> HAM10000 class.
LEGACY_TO_HAM: dict[str, str] = {
    "melanoma": "mel",
    "nevus": "nv",
    "basal cell carcinoma": "bcc",
    "actinic keratosis": "akiec",
    "seborrheic keratosis": "bkl",
    "pigmented benign keratosis": "bkl",
    "solar lentigo": "bkl",
    "lichenoid keratosis": "bkl",
    "dermatofibroma": "df",
    "vascular lesion": "vasc",
    "angioma": "vasc",
    "angiokeratoma": "vasc",
    "pyogenic granuloma": "vasc",
}
LEGACY_MALIGNANT = frozenset(
    {
        "melanoma",
        "melanoma metastasis",
        "basal cell carcinoma",
        "squamous cell carcinoma",
        "actinic keratosis",
    }
    | {"merkel cell carcinoma"}
)


def _check_against_package() -> None:
    general = {m.value for m in AnatomSiteGeneralEnum}
    hierarchical = {m.value for m in AnatomSiteEnum}
    diagnoses = {m.value for m in DiagnosisEnum}
    legacy = {m.value for m in LegacyDxEnum}
    assert set(SITE_TO_ISIC) == {*SITES, UNKNOWN_SITE}, "a stored site has no ISIC mapping"
    for site, (gen, hier) in SITE_TO_ISIC.items():
        assert gen is None or gen in general, f"{site}: {gen!r} is not an ISIC anatom_site_general"
        assert hier is None or hier in hierarchical, f"{site}: {hier!r} is not an ISIC anatom_site"
    assert set(ISIC_GENERAL_TO_SITE.values()) <= set(SITES)
    for value in [*DIAGNOSIS_TO_ISIC.values(), AKIEC_MALIGNANT, *(p for p, _ in _ISIC_PREFIX_TO_HAM)]:
        assert value in diagnoses, f"{value!r} is not an ISIC diagnosis"
    assert set(LEGACY_TO_HAM) <= legacy | {"pigmented benign keratosis"}


_check_against_package()


def isic_diagnosis(diagnosis: str, *, malignant: bool) -> str:
    """The ISIC hierarchical diagnosis for a stored diagnosis and the reviewer's malignant flag."""
    if diagnosis == "akiec" and malignant:
        return AKIEC_MALIGNANT
    if diagnosis in DIAGNOSIS_TO_ISIC:
        return DIAGNOSIS_TO_ISIC[diagnosis]
    return "Malignant" if malignant else "Benign"


def site_from_isic(general: str = "", hierarchical: str = "") -> str:
    """The stored site for ISIC site values (general first, then the top of the hierarchy); "" if unknown."""
    general = (general or "").strip().lower()
    if general in ISIC_GENERAL_TO_SITE:
        return ISIC_GENERAL_TO_SITE[general]
    if general == "torso":  # the 2020 challenge's value
        return "torso"
    top = (hierarchical or "").split(":")[0].strip()
    return ISIC_SITE_1_TO_SITE.get(top, "")


@dataclass(frozen=True)
class IsicLabel:
    ham_class: str | None  # None: not one of the seven HAM10000 classes
    malignant: int | None  # None: no benign/malignant call (e.g. an indeterminate melanocytic lesion)
    diagnosis: str  # the value as read, for messages and the "diagnosis" of the record


def _hierarchical(row: dict) -> str:
    levels = [(row.get(f"diagnosis_{i}") or "").strip() for i in range(1, 6)]
    if levels[0]:
        return ":".join(level for level in levels if level)
    value = (row.get("diagnosis") or "").strip()
    if ":" in value or value in ("Benign", "Malignant", "Indeterminate"):
        return value
    try:  # a terminal value ("Nevus") names its whole path in the ISIC hierarchy
        return DiagnosisEnum.accept_terminal_values(value) if value else ""
    except (TypeError, ValueError):
        return ""


def isic_label(row: dict) -> IsicLabel:
    """HAM10000 class and malignancy of an ISIC metadata row (hierarchical ``diagnosis_1..5`` or ``diagnosis``,
    or the legacy single-value ``diagnosis``; ``benign_malignant`` when given wins for malignancy)."""
    path = _hierarchical(row)
    legacy = (row.get("diagnosis") or "").strip().lower()
    ham, malignant = None, None
    if path and path.split(":")[0] in ("Benign", "Malignant", "Indeterminate"):
        ham = next((cls for prefix, cls in _ISIC_PREFIX_TO_HAM if path.startswith(prefix)), None)
        top = path.split(":")[0]
        malignant = {"Malignant": 1, "Benign": 0}.get(top, 1 if ham == "akiec" else None)
        shown = path
    else:
        ham = LEGACY_TO_HAM.get(legacy)
        if legacy in LEGACY_MALIGNANT:
            malignant = 1
        elif legacy in LEGACY_TO_HAM or legacy in {m.value.lower() for m in LegacyDxEnum}:
            malignant = 0 if legacy not in ("other", "aimp", "atypical melanocytic proliferation") else None
        shown = legacy
    verdict = (row.get("benign_malignant") or "").strip().lower()
    if verdict in ("benign", "malignant"):
        malignant = int(verdict == "malignant")
    return IsicLabel(ham_class=ham, malignant=malignant, diagnosis=shown)


EXPORT_COLUMNS = (
    "isic_id",
    "filename",
    "patient_id",
    "lesion_id",
    "age_approx",
    "sex",
    "anatom_site_general",
    "anatom_site_1",
    "diagnosis",
    "diagnosis_1",
    "diagnosis_2",
    "diagnosis_3",
    "diagnosis_confirm_type",
    "image_type",
)


def export_row(
    *,
    isic_id: str,
    filename: str,
    patient_id: str,
    lesion_id: str,
    age: int | None,
    sex: str,
    site: str,
    diagnosis: str,
    malignant: bool,
) -> dict[str, str]:
    """One ISIC-style CSV row, validated with the ISIC Archive's own ``MetadataRow`` model."""
    general, hierarchical = SITE_TO_ISIC.get(site, (None, None))
    values = {
        "age": None if age is None else min(85, 5 * round(age / 5)),  # the Archive's 5-year bins, 85+ top
        "sex": sex if sex in ("male", "female") else None,
        "anatom_site_general": general,
        "anatom_site": hierarchical,
        "diagnosis": isic_diagnosis(diagnosis, malignant=malignant),
        "diagnosis_confirm_type": "single contributor clinical assessment",
        "image_type": "dermoscopic",
        "patient_id": patient_id,
        "lesion_id": lesion_id,
    }
    row = MetadataRow.model_validate(values)  # raises pydantic's ValidationError on a value ISIC rejects
    dumped = row.model_dump()
    return {
        "isic_id": isic_id,
        "filename": filename,
        "patient_id": patient_id,
        "lesion_id": lesion_id,
        "age_approx": "" if row.age is None else str(row.age),
        "sex": row.sex or "",
        "anatom_site_general": row.anatom_site_general.value if row.anatom_site_general else "",
        "anatom_site_1": dumped.get("anatom_site_1") or "",
        "diagnosis": values["diagnosis"],
        "diagnosis_1": dumped.get("diagnosis_1") or "",
        "diagnosis_2": dumped.get("diagnosis_2") or "",
        "diagnosis_3": dumped.get("diagnosis_3") or "",
        "diagnosis_confirm_type": row.diagnosis_confirm_type.value,
        "image_type": row.image_type.value,
    }
