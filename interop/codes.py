"""Code systems and the mapping tables from TeleDerm's stored codes to SNOMED CT, LOINC and DICOM.

Pure data (no Django): the FHIR and DICOM mappers and the docs read the same tables. Stored codes never change;
these tables translate them on the way out.

Where a SNOMED CT concept id could not be verified offline against a published source (the DICOM standard's
own code tables shipped with pydicom, or a terminology server page), the table holds ``None`` and the output
carries the TeleDerm code and text only: a missing code is safer than a wrong one. docs/interop.md lists them.
"""

from __future__ import annotations

from dataclasses import dataclass

SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
DICOM_DCM = "http://dicom.nema.org/resources/ontology/DCM"
MEDIA_TYPE = "http://terminology.hl7.org/CodeSystem/media-type"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
V2_0074 = "http://terminology.hl7.org/CodeSystem/v2-0074"
# TeleDerm's own code systems (stored codes, AI observation codes) and identifier namespaces.
TELEDER_BASE = "https://teleder.org/fhir"
DIAGNOSIS_SYSTEM = f"{TELEDER_BASE}/CodeSystem/diagnosis"
SITE_SYSTEM = f"{TELEDER_BASE}/CodeSystem/anatomic-site"
RISK_BAND_SYSTEM = f"{TELEDER_BASE}/CodeSystem/risk-band"
MANAGEMENT_SYSTEM = f"{TELEDER_BASE}/CodeSystem/management"
AI_OBSERVATION_SYSTEM = f"{TELEDER_BASE}/CodeSystem/ai-observation"
REPORT_IDENTIFIER_SYSTEM = f"{TELEDER_BASE}/sid/report-uid"
CASE_IDENTIFIER_SYSTEM = f"{TELEDER_BASE}/sid/case"
USER_IDENTIFIER_SYSTEM = f"{TELEDER_BASE}/sid/user"
IMAGE_IDENTIFIER_SYSTEM = f"{TELEDER_BASE}/sid/image-sha256"
LESION_IDENTIFIER_SYSTEM = f"{TELEDER_BASE}/sid/lesion"


def patient_identifier_system(organization_slug: str) -> str:
    """Pseudonymous references are unique per organization: one identifier namespace per organization."""
    return f"{TELEDER_BASE}/sid/organization/{organization_slug}/patient"


@dataclass(frozen=True)
class Concept:
    system: str
    code: str
    display: str

    def coding(self) -> dict:
        return {"system": self.system, "code": self.code, "display": self.display}


# LOINC 34758-3 "Dermatology Consult note" (LOINC document ontology, FHIR document type value set).
REPORT_CODE = Concept(LOINC, "34758-3", "Dermatology Consult note")
# DICOM CID 29 acquisition modality: DMS = Dermoscopy.
DERMOSCOPY_MODALITY = Concept(DICOM_DCM, "DMS", "Dermoscopy")
# SNOMED 446078004 "Dermoscopic photography (procedure)", as listed in pydicom's DICOM concept tables.
DERMOSCOPIC_PHOTOGRAPHY = Concept(SNOMED, "446078004", "Dermoscopic photography")

# Diagnosis (stored Review.diagnosis code) -> SNOMED CT clinical finding. ``akiec`` merges actinic keratosis and
# intraepithelial carcinoma (Bowen's disease): the review's ``malignant`` flag picks the concept.
DIAGNOSIS_SNOMED: dict[str, Concept | None] = {
    "mel": Concept(SNOMED, "372244006", "Malignant melanoma"),
    "nv": Concept(SNOMED, "400096001", "Melanocytic naevus"),
    "bcc": Concept(SNOMED, "254701007", "Basal cell carcinoma of skin"),
    "akiec": Concept(SNOMED, "201101007", "Actinic keratosis"),
    "bkl": None,  # benign keratosis (seborrhoeic keratosis, solar lentigo, LPLK): no verified code offline
    "df": None,  # dermatofibroma: no verified code offline
    "vasc": Concept(SNOMED, "400210000", "Hemangioma"),
    "other": None,
}
AKIEC_MALIGNANT = Concept(SNOMED, "254656002", "Squamous cell carcinoma in situ of skin")

# Stored site code -> a SNOMED CT body region (DICOM CID 4031 "Common Anatomic Regions", via pydicom's tables).
# palms/soles has no single region concept: "Extremity" is the nearest correct parent. oral/genital has none.
SITE_SNOMED: dict[str, Concept | None] = {
    "head/neck": Concept(SNOMED, "774007", "Head and Neck"),
    "upper extremity": Concept(SNOMED, "53120007", "Upper limb"),
    "lower extremity": Concept(SNOMED, "61685007", "Lower limb"),
    "torso": Concept(SNOMED, "22943007", "Trunk"),
    "palms/soles": Concept(SNOMED, "66019005", "Extremity"),
    "oral/genital": None,
    "unknown": None,
}
# Laterality (DICOM CID 244) for the Image Laterality attribute and FHIR BodyStructure qualifiers.
LATERALITY = {
    "L": Concept(SNOMED, "7771000", "Left"),
    "R": Concept(SNOMED, "24028007", "Right"),
}


def diagnosis_concept(diagnosis: str, *, malignant: bool) -> Concept | None:
    """The SNOMED CT concept for a stored diagnosis (None where none is mapped)."""
    if diagnosis == "akiec" and malignant:
        return AKIEC_MALIGNANT
    return DIAGNOSIS_SNOMED.get(diagnosis)


_LEFT = ("left", "links", "gauche", "izquierd")
_RIGHT = ("right", "rechts", "droit", "derech")


def laterality_from_label(label: str) -> str | None:
    """ "L" or "R" when the lesion's free-text label names exactly one side ("left shoulder"), else None."""
    import re

    words = set(re.findall(r"[a-zà-ÿ]+", (label or "").lower()))
    left = any(word.startswith(_LEFT) for word in words)
    right = any(word.startswith(_RIGHT) for word in words)
    if left == right:
        return None
    return "L" if left else "R"
