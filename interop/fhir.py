"""A reported case as FHIR R4 resources (``fhir.resources.R4B``: FHIR 4.3, identical to R4 4.0.1 for every
resource and element used here).

Pure mapping: the functions take model instances already loaded (``interop.selectors``) plus the signed PDF's
bytes and return plain JSON-ready dicts; ``validate`` parses them with ``fhir.resources`` so that nothing
leaves the platform that the FHIR models reject. Resource ids are name-based UUIDs (uuid5) of what they
describe, so exporting the same case twice gives the same ids, and the DiagnosticReport of a case keeps its id
when an addendum amends it (``meta.versionId`` counts the signed reports).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

from cases.models import Case, LesionImage, Prediction, Report, Review, User
from cases.vocabulary import Diagnosis, Management, RiskBand, Sex, Site
from interop import codes
from interop.codes import Concept

FHIR_VERSION = "4.0.1"
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, codes.TELEDER_BASE)
_GENDER = {Sex.MALE: "male", Sex.FEMALE: "female", Sex.UNKNOWN: "unknown"}


def resource_id(kind: str, *parts: object) -> str:
    """A stable UUID for one thing: the same inputs always give the same id."""
    return str(uuid.uuid5(_NAMESPACE, ":".join([kind, *(str(p) for p in parts)])))


def _ref(resource: dict) -> dict:
    return {"reference": f"urn:uuid:{resource['id']}"}


def _instant(moment) -> str:
    """UTC, "Z", microseconds only when there are any: the form fhir.resources writes, so a parse and a dump
    give back the same text."""
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _concept(coding: Iterable[Concept | None], text: str) -> dict:
    codings = [c.coding() for c in coding if c is not None]
    return {"coding": codings, "text": text} if codings else {"text": text}


def diagnosis_codeable(diagnosis: str, *, malignant: bool) -> dict:
    label = Diagnosis(diagnosis).label if diagnosis in Diagnosis.values else diagnosis
    local = Concept(codes.DIAGNOSIS_SYSTEM, diagnosis, str(label))
    return _concept([codes.diagnosis_concept(diagnosis, malignant=malignant), local], str(label))


def site_codeable(site: str) -> dict:
    label = str(Site(site).label) if site in Site.values else site
    return _concept([codes.SITE_SNOMED.get(site), Concept(codes.SITE_SYSTEM, site, label)], label)


@dataclass
class CaseRecord:
    """Everything one export reads, loaded by ``interop.selectors.fhir_case``."""

    case: Case
    report: Report  # the current signed report (the latest; an addendum when the case was corrected)
    review: Review
    reports: list[Report]
    images: list[LesionImage]
    predictions: dict[int, Prediction] = field(default_factory=dict)  # image id -> prediction of case's model
    pdf: bytes | None = None  # None: presentedForm gives the download URL and hash without the data
    pdf_url: str = ""
    image_urls: dict[int, str] = field(default_factory=dict)


def patient_resource(case: Case) -> dict:
    patient = case.lesion.patient
    resource = {
        "resourceType": "Patient",
        "id": resource_id("Patient", patient.organization.slug, patient.reference, patient.created_at),
        "identifier": [
            {
                "use": "secondary",
                "system": codes.patient_identifier_system(patient.organization.slug),
                "value": patient.reference,
            }
        ],
        "gender": _GENDER.get(patient.sex, "unknown"),
    }
    if patient.year_of_birth:
        resource["birthDate"] = str(patient.year_of_birth)  # the year only
    return resource


def practitioner_resource(user: User, display_name: str = "") -> dict:
    return {
        "resourceType": "Practitioner",
        "id": resource_id("Practitioner", user.username, user.date_joined),
        "identifier": [{"system": codes.USER_IDENTIFIER_SYSTEM, "value": user.username}],
        "name": [{"text": display_name or user.display_name}],
    }


def body_structure_resource(case: Case, patient: dict) -> dict:
    lesion = case.lesion
    resource = {
        "resourceType": "BodyStructure",
        "id": resource_id("BodyStructure", patient["id"], lesion.pk),
        "identifier": [{"system": codes.LESION_IDENTIFIER_SYSTEM, "value": str(lesion.pk)}],
        "location": site_codeable(case.site_at_submission),
        "patient": _ref(patient),
    }
    side = codes.laterality_from_label(lesion.label)
    if side:
        resource["locationQualifier"] = [_concept([codes.LATERALITY[side]], codes.LATERALITY[side].display)]
    if lesion.label:
        resource["description"] = lesion.label
    return resource


def device_resource(model_version) -> dict:
    return {
        "resourceType": "Device",
        "id": resource_id("Device", model_version.name, model_version.version, model_version.sha256),
        "deviceName": [{"name": model_version.name, "type": "model-name"}],
        "version": [{"value": model_version.version}],
        "type": {"text": "AI software: ONNX ensemble for skin lesion risk"},
        "note": [{"text": f"Package manifest sha256 {model_version.sha256}"}],
    }


def media_resource(image: LesionImage, record: CaseRecord, patient: dict, body: dict) -> dict:
    content = {
        "contentType": image.content_type,
        "size": image.size_bytes,
        "title": f"Image {image.position + 1} of case {record.case.pk}",
        "creation": _instant(image.created_at),
    }
    url = record.image_urls.get(image.pk)
    if url:
        content["url"] = url
    return {
        "resourceType": "Media",
        "id": resource_id("Media", image.sha256, image.case_id, image.position),
        "identifier": [{"system": codes.IMAGE_IDENTIFIER_SYSTEM, "value": image.sha256}],
        "status": "completed",
        "type": {"coding": [{"system": codes.MEDIA_TYPE, "code": "image", "display": "Image"}]},
        "modality": _concept([codes.DERMOSCOPY_MODALITY], "Dermoscopy"),
        "subject": _ref(patient),
        "createdDateTime": _instant(image.created_at),
        "bodySite": body["location"],
        "width": image.width,
        "height": image.height,
        "content": content,
    }


def _probability(value: float) -> dict:
    return {"value": round(float(value), 6), "unit": "probability", "system": codes.UCUM, "code": "1"}


def risk_observation(record: CaseRecord, patient: dict, body: dict, device: dict, media: list[dict]) -> dict:
    case = record.case
    band = case.risk_band
    model = case.model_version
    return {
        "resourceType": "Observation",
        "id": resource_id("Observation", "ai-risk", record.report.uid),
        "status": "final",
        "category": [
            {"coding": [{"system": codes.OBSERVATION_CATEGORY, "code": "imaging", "display": "Imaging"}]}
        ],
        "code": _concept(
            [Concept(codes.AI_OBSERVATION_SYSTEM, "malignancy-risk", "AI probability of malignancy")],
            "AI probability of malignancy (highest over the case's images)",
        ),
        "subject": _ref(patient),
        "focus": [_ref(body)],
        "effectiveDateTime": _instant(case.analysed_at or case.created_at),
        "valueQuantity": _probability(case.risk),
        "interpretation": [
            _concept(
                [Concept(codes.RISK_BAND_SYSTEM, band, str(RiskBand(band).label))],
                f"{RiskBand(band).label} risk",
            )
        ]
        if band in RiskBand.values
        else [],
        "bodySite": body["location"],
        "method": {"text": f"{model.name} {model.version}" if model else "AI ensemble"},
        "device": _ref(device),
        "derivedFrom": [_ref(m) for m in media],
    }


def differential_observations(
    record: CaseRecord, patient: dict, body: dict, device: dict, media_by_image: dict[int, dict]
) -> list[dict]:
    """One Observation per class probability per image, when the model gives a differential."""
    out = []
    for image in record.images:
        prediction = record.predictions.get(image.pk)
        if prediction is None or not set(prediction.class_probabilities or {}) & set(Diagnosis.values):
            continue  # no differential (a binary model's benign/malignant pair is the risk Observation)
        for label, value in sorted(prediction.class_probabilities.items()):
            try:
                probability = float(value)
            except (TypeError, ValueError):
                continue
            diagnosis = diagnosis_codeable(str(label), malignant=False)
            out.append(
                {
                    "resourceType": "Observation",
                    "id": resource_id("Observation", "ai-differential", prediction.pk, label),
                    "status": "final",
                    "category": [
                        {
                            "coding": [
                                {
                                    "system": codes.OBSERVATION_CATEGORY,
                                    "code": "imaging",
                                    "display": "Imaging",
                                }
                            ]
                        }
                    ],
                    "code": _concept(
                        [Concept(codes.AI_OBSERVATION_SYSTEM, "differential-probability", "AI differential")],
                        f"AI probability of {diagnosis['text']} (image {image.position + 1})",
                    ),
                    "subject": _ref(patient),
                    "focus": [_ref(body)],
                    "effectiveDateTime": _instant(prediction.created_at),
                    "valueQuantity": _probability(min(max(probability, 0.0), 1.0)),
                    "component": [
                        {
                            "code": _concept(
                                [Concept(codes.AI_OBSERVATION_SYSTEM, "diagnosis", "Diagnosis")], "Diagnosis"
                            ),
                            "valueCodeableConcept": diagnosis,
                        }
                    ],
                    "method": {"text": str(prediction.model_version)},
                    "device": _ref(device),
                    "derivedFrom": [_ref(media_by_image[image.pk])],
                }
            )
    return out


def _conclusion(review: Review) -> str:
    label = Diagnosis(review.diagnosis).label if review.diagnosis in Diagnosis.values else review.diagnosis
    management = Management(review.management).label if review.management in Management.values else ""
    if review.management == Management.FOLLOW_UP and review.follow_up_months:
        management = f"{management} in {review.follow_up_months} months"
    parts = [f"{label} ({'malignant' if review.malignant else 'benign'}).", f"Management: {management}."]
    if review.notes:
        parts.append(review.notes)
    return " ".join(parts)


def presented_form(record: CaseRecord) -> dict:
    report = record.report
    form = {
        "contentType": "application/pdf",
        "language": "en",
        "title": f"{'Addendum' if report.is_addendum else 'Report'} {report.uid}",
        "creation": _instant(report.signed_at),
    }
    if record.pdf is not None:
        form["data"] = base64.b64encode(record.pdf).decode("ascii")
        form["size"] = len(record.pdf)
        # FHIR R4 Attachment.hash is the base64 SHA-1 of the data.
        form["hash"] = base64.b64encode(hashlib.sha1(record.pdf, usedforsecurity=False).digest()).decode()
    if record.pdf_url:
        form["url"] = record.pdf_url
    return form


def service_request(record: CaseRecord, patient: dict, referrer: dict, body: dict) -> dict:
    """The referral: who asked, how urgently, with which clinical notes."""
    case = record.case
    resource = {
        "resourceType": "ServiceRequest",
        "id": resource_id("ServiceRequest", case.organization.slug, case.pk, case.created_at),
        "identifier": [{"system": codes.CASE_IDENTIFIER_SYSTEM, "value": str(case.pk)}],
        "status": "completed",
        "intent": "order",
        "priority": "urgent" if case.priority == "urgent" else "routine",
        "code": _concept([codes.REPORT_CODE], "Teledermatology consultation"),
        "subject": _ref(patient),
        "authoredOn": _instant(case.created_at),
        "requester": _ref(referrer),
        "bodySite": [body["location"]],
    }
    if case.clinical_notes:
        resource["note"] = [{"text": case.clinical_notes}]
    return resource


def diagnostic_report(
    record: CaseRecord, patient: dict, signer: dict, request: dict, results: list[dict], media: list[dict]
) -> dict:
    case, report, review = record.case, record.report, record.review
    return {
        "resourceType": "DiagnosticReport",
        "id": resource_id("DiagnosticReport", case.organization.slug, case.pk, case.created_at),
        "meta": {"versionId": str(len(record.reports)), "lastUpdated": _instant(report.signed_at)},
        "identifier": [
            {"system": codes.REPORT_IDENTIFIER_SYSTEM, "value": str(r.uid)} for r in reversed(record.reports)
        ]
        + [{"system": codes.CASE_IDENTIFIER_SYSTEM, "value": str(case.pk)}],
        "basedOn": [_ref(request)],
        "status": "amended" if report.is_addendum else "final",
        "code": _concept([codes.REPORT_CODE], "Teledermatology report"),
        "subject": _ref(patient),
        "effectiveDateTime": _instant(case.created_at),
        "issued": _instant(report.signed_at),
        "performer": [_ref(signer)],
        "resultsInterpreter": [_ref(signer)],
        "result": [_ref(r) for r in results],
        "media": [{"comment": m["content"]["title"], "link": _ref(m)} for m in media],
        "conclusion": _conclusion(review),
        "conclusionCode": [diagnosis_codeable(review.diagnosis, malignant=review.malignant)],
        "presentedForm": [presented_form(record)],
    }


def case_resources(record: CaseRecord) -> list[dict]:
    """The DiagnosticReport first, then everything it references."""
    case = record.case
    patient = patient_resource(case)
    body = body_structure_resource(case, patient)
    signer = practitioner_resource(record.report.signer, record.report.signer_name)
    referrer = practitioner_resource(case.submitted_by)
    media_by_image = {image.pk: media_resource(image, record, patient, body) for image in record.images}
    media = list(media_by_image.values())
    observations: list[dict] = []
    extra: list[dict] = []
    if case.model_version is not None and case.risk is not None:
        device = device_resource(case.model_version)
        extra.append(device)
        observations.append(risk_observation(record, patient, body, device, media))
        observations.extend(differential_observations(record, patient, body, device, media_by_image))
    request = service_request(record, patient, referrer, body)
    report = diagnostic_report(record, patient, signer, request, observations, media)
    practitioners = [signer] if signer["id"] == referrer["id"] else [signer, referrer]
    return [report, patient, *practitioners, request, body, *media, *observations, *extra]


def _prune(node):
    """FHIR JSON has no empty arrays, objects or strings: drop them (and what becomes empty)."""
    if isinstance(node, dict):
        pruned = {key: _prune(value) for key, value in node.items()}
        return {key: value for key, value in pruned.items() if value not in ([], {}, "", None)}
    if isinstance(node, list):
        return [item for item in (_prune(value) for value in node) if item not in ([], {}, "", None)]
    return node


def _entries(resources: list[dict], mode: str | None = None) -> list[dict]:
    entries = []
    for resource in resources:
        entry = {"fullUrl": f"urn:uuid:{resource['id']}", "resource": resource}
        if mode:
            entry["search"] = {"mode": mode}
        entries.append(entry)
    return entries


def case_bundle(record: CaseRecord) -> dict:
    """A ``collection`` Bundle: the report and every resource it references, references as urn:uuid."""
    return _prune(
        {
            "resourceType": "Bundle",
            "id": resource_id("Bundle", record.report.uid),
            "meta": {"lastUpdated": _instant(record.report.signed_at)},
            "identifier": {"system": codes.REPORT_IDENTIFIER_SYSTEM, "value": str(record.report.uid)},
            "type": "collection",
            "timestamp": _instant(record.report.signed_at),
            "entry": _entries(case_resources(record)),
        }
    )


def search_bundle(records: list[CaseRecord], *, total: int, self_url: str, now) -> dict:
    """A ``searchset``: each case's DiagnosticReport as a match, the resources it references as includes."""
    entries, seen = [], set()
    for record in records:
        report, *referenced = case_resources(record)
        entries.extend(_entries([report], "match"))
        for resource in referenced:
            key = (resource["resourceType"], resource["id"])
            if key not in seen:
                seen.add(key)
                entries.extend(_entries([resource], "include"))
    return _prune(
        {
            "resourceType": "Bundle",
            "id": str(uuid.uuid4()),
            "type": "searchset",
            "timestamp": _instant(now),
            "total": total,
            "link": [{"relation": "self", "url": self_url}],
            "entry": entries,
        }
    )


def validate(bundle: dict):
    """Parse with the fhir.resources R4 models (imported here: about 1 s, paid only by who validates); raises
    pydantic's ValidationError on anything invalid. Returns the ``Bundle`` model."""
    from fhir.resources.R4B.bundle import Bundle

    return Bundle.model_validate(bundle)


def to_json(bundle) -> str:
    return bundle.model_dump_json(exclude_none=True)
