"""DICOM for dermoscopy images: export each case image as a VL Photographic Image object, and read a DICOM
dermoscopy file back into plain pixels for the upload validator.

Pure functions (pydicom + highdicom; no database): ``interop.services`` and the views feed them. Export keeps the
stored JPEG bytes as they are (JPEG Baseline, encapsulated) and writes PNGs as uncompressed RGB; the patient is
identified by the organization's pseudonymous reference only. Study, series and instance UIDs are name-based
(2.25 UIDs from name-based UUIDs of what they identify), so exporting a case twice gives the same UIDs.
"""

from __future__ import annotations

import io
import uuid
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pydicom
from highdicom import SOPClass
from highdicom.sr import CodedConcept
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.filereader import _read_file_meta_info  # public twin takes only a path (pydicom 3)
from pydicom.uid import (
    JPEG2000,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    RLELossless,
)

from interop import codes

VL_PHOTOGRAPHIC_IMAGE = "1.2.840.10008.5.1.4.1.1.77.1.4"
DERMOSCOPIC_PHOTOGRAPHY_IMAGE = "1.2.840.10008.5.1.4.1.1.77.1.7"
ACCEPTED_SOP_CLASSES = {
    VL_PHOTOGRAPHIC_IMAGE: "VL Photographic Image",
    DERMOSCOPIC_PHOTOGRAPHY_IMAGE: "Dermoscopic Photography Image",
}
ACCEPTED_MODALITIES = {"XC", "DMS"}
SUPPORTED_TRANSFER_SYNTAXES = {
    ImplicitVRLittleEndian: "Implicit VR Little Endian",
    ExplicitVRLittleEndian: "Explicit VR Little Endian",
    JPEGBaseline8Bit: "JPEG Baseline",
    JPEGExtended12Bit: "JPEG Extended (8-bit data)",
    JPEG2000Lossless: "JPEG 2000 lossless",
    JPEG2000: "JPEG 2000",
    RLELossless: "RLE lossless",
}
MANUFACTURER = "TeleDerm"
_SEX = {"male": "M", "female": "F"}


class DicomRefused(ValueError):
    """A DICOM file that cannot become a case image; ``str`` is a message a person can act on."""

    def __init__(self, message: str, code: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class ExportImage:
    """What one exported instance needs about its image (the mapper never touches storage)."""

    content: bytes
    content_type: str
    position: int
    sha256: str
    created_at: datetime


@dataclass(frozen=True)
class ExportCase:
    pk: int
    organization_slug: str
    created_at: datetime
    patient_reference: str
    patient_sex: str
    age_at_submission: int | None
    site: str
    lesion_label: str
    referrer_name: str
    software_version: str = ""


_UID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, codes.TELEDER_BASE + "/dicom")


def _uid(*parts: object) -> str:
    """A 2.25 UID (ISO/IEC 9834-8) from a name-based UUID: the same inputs give the same UID."""
    return f"2.25.{uuid.uuid5(_UID_NAMESPACE, ':'.join(str(p) for p in parts)).int}"


def study_uid(case: ExportCase) -> str:
    return _uid("study", case.organization_slug, case.pk, case.created_at.isoformat())


def series_uid(case: ExportCase) -> str:
    return _uid("series", case.organization_slug, case.pk, case.created_at.isoformat())


def instance_uid(case: ExportCase, image: ExportImage) -> str:
    return _uid("instance", case.organization_slug, case.pk, image.position, image.sha256)


def _person_name(display_name: str) -> str:
    parts = display_name.replace("^", " ").split()
    return f"{parts[-1]}^{' '.join(parts[:-1])}" if len(parts) > 1 else (parts[0] if parts else "")


def _code(concept: codes.Concept) -> CodedConcept:
    scheme = {codes.SNOMED: "SCT", codes.DICOM_DCM: "DCM"}[concept.system]
    return CodedConcept(value=concept.code, scheme_designator=scheme, meaning=concept.display)


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def image_dataset(case: ExportCase, image: ExportImage) -> Dataset:
    """One VL Photographic Image instance for one stored case image."""
    jpeg = image.content_type == "image/jpeg"
    with Image.open(io.BytesIO(image.content)) as probe:
        width, height = probe.size
        if jpeg and (probe.format != "JPEG" or probe.mode != "RGB" or probe.info.get("progressive")):
            jpeg = False  # only baseline RGB JPEGs are kept as they are
        pixels = None if jpeg else np.asarray(probe.convert("RGB"), dtype=np.uint8)
    study_time = _utc(case.created_at)
    content_time = _utc(image.created_at)
    ds = SOPClass(
        study_instance_uid=study_uid(case),
        series_instance_uid=series_uid(case),
        series_number=1,
        sop_instance_uid=instance_uid(case, image),
        sop_class_uid=VL_PHOTOGRAPHIC_IMAGE,
        instance_number=image.position + 1,
        modality="XC",
        manufacturer=MANUFACTURER,
        transfer_syntax_uid=JPEGBaseline8Bit if jpeg else ExplicitVRLittleEndian,
        patient_id=case.patient_reference,
        patient_name="",  # pseudonymous: the organization's reference is the only patient identifier
        patient_sex=_SEX.get(case.patient_sex, "O"),
        accession_number="",
        study_id=str(case.pk)[:16],
        study_date=study_time.date(),
        study_time=study_time.time(),
        referring_physician_name=_person_name(case.referrer_name),
        series_description="Dermoscopy",
        software_versions=case.software_version or None,
        content_date=content_time.date(),
        content_time=content_time.time(),
        series_date=study_time.date(),
        series_time=study_time.time(),
        specific_character_set="ISO_IR 192",
    )
    ds.IssuerOfPatientID = case.organization_slug[:64]
    ds.PatientBirthDate = ""
    if case.age_at_submission is not None:
        ds.PatientAge = f"{min(case.age_at_submission, 999):03d}Y"
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "Pseudonymous reference only (TeleDerm)"
    ds.StudyDescription = f"Teledermatology case {case.pk}"
    ds.ProcedureCodeSequence = [_code(codes.DERMOSCOPIC_PHOTOGRAPHY)]
    region = codes.SITE_SNOMED.get(case.site)
    if region is not None:
        ds.AnatomicRegionSequence = [_code(region)]
    side = codes.laterality_from_label(case.lesion_label)
    ds.ImageLaterality = side or "U"  # U: unpaired or not known
    ds.ImageType = ["DERIVED", "PRIMARY"]  # TeleDerm re-encoded the upload
    ds.AcquisitionContextSequence = []
    ds.SamplesPerPixel = 3
    ds.Rows, ds.Columns = height, width
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PlanarConfiguration = 0
    if jpeg:
        ds.PhotometricInterpretation = "YBR_FULL_422" if _subsampled(image.content) else "YBR_FULL"
        ds.LossyImageCompression = "01"
        ds.LossyImageCompressionMethod = "ISO_10918_1"
        ds.PixelData = encapsulate([image.content])
        ds["PixelData"].VR = "OB"
    else:
        ds.PhotometricInterpretation = "RGB"
        ds.LossyImageCompression = "00"
        ds.PixelData = pixels.tobytes()
    return ds


def _subsampled(jpeg: bytes) -> bool:
    from PIL import JpegImagePlugin

    with Image.open(io.BytesIO(jpeg)) as image:
        return JpegImagePlugin.get_sampling(image) not in (-1, 0)


def dataset_bytes(ds: Dataset) -> bytes:
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def case_zip(case: ExportCase, images: list[ExportImage]) -> bytes:
    """A ZIP with one .dcm file per image, in image order (IMG0001.dcm, ...)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for image in images:
            archive.writestr(f"IMG{image.position + 1:04d}.dcm", dataset_bytes(image_dataset(case, image)))
    return out.getvalue()


# Import ----------------------------------------------------------------------------------------------------


def _read(data: bytes) -> Dataset:
    """Parse an untrusted DICOM file: the file meta first, the data set only for a supported transfer syntax
    (a deflated data set, for one, is refused unread: it could inflate to gigabytes)."""
    if len(data) < 132 or data[128:132] != b"DICM":
        raise DicomRefused("The file is not a DICOM file (no DICM preamble).", "not_dicom")
    try:
        stream = io.BytesIO(data)
        stream.seek(132)
        meta = _read_file_meta_info(stream)
        syntax = str(meta.get("TransferSyntaxUID", "") or "")
    except Exception as exc:  # noqa: BLE001 - whatever the parser trips on, the file is damaged
        raise DicomRefused("The DICOM file is damaged or truncated and cannot be read.", "malformed") from exc
    if syntax not in SUPPORTED_TRANSFER_SYNTAXES:
        name = pydicom.uid.UID(syntax).name if syntax else "not given"
        raise DicomRefused(
            f"The DICOM transfer syntax ({name}) is not supported; send it uncompressed, JPEG baseline, "
            "JPEG 2000 or RLE.",
            "unsupported_transfer_syntax",
        )
    try:
        return pydicom.dcmread(io.BytesIO(data), force=False)
    except Exception as exc:  # noqa: BLE001 - whatever the parser trips on, the file is damaged
        raise DicomRefused("The DICOM file is damaged or truncated and cannot be read.", "malformed") from exc


def _text(ds: Dataset, keyword: str) -> str:
    try:
        return str(ds.get(keyword, "") or "").strip()
    except (ValueError, TypeError, KeyError):
        return ""


def dicom_to_png(data: bytes, *, max_pixels: int) -> bytes:
    """The pixels of a single-frame dermoscopy/photographic DICOM file as a PNG; every other attribute is
    dropped. Raises ``DicomRefused`` for another modality, an unsupported transfer syntax or a damaged file."""
    ds = _read(data)
    if "PixelData" not in ds:
        raise DicomRefused("The DICOM file is damaged or truncated: it holds no pixel data.", "malformed")
    sop_class = _text(ds, "SOPClassUID") or _text(ds.file_meta, "MediaStorageSOPClassUID")
    modality = _text(ds, "Modality").upper()
    if sop_class not in ACCEPTED_SOP_CLASSES or modality not in ACCEPTED_MODALITIES:
        kind = pydicom.uid.UID(sop_class).name if sop_class else "an unknown kind of object"
        raise DicomRefused(
            f"The DICOM file is {kind} (modality {modality or 'not given'}); only dermoscopy or photographic "
            "images (VL Photographic Image or Dermoscopic Photography Image, modality XC or DMS) are accepted.",
            "wrong_modality",
        )
    try:
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        rows, columns = int(ds.Rows), int(ds.Columns)
        bits, samples = int(ds.BitsAllocated), int(ds.SamplesPerPixel)
        photometric = _text(ds, "PhotometricInterpretation")
    except (AttributeError, ValueError, TypeError) as exc:
        raise DicomRefused("The DICOM file has no readable image pixel description.", "malformed") from exc
    if frames != 1:
        raise DicomRefused(f"The DICOM file holds {frames} frames; send one image per file.", "multi_frame")
    if bits != 8 or samples not in (1, 3):
        raise DicomRefused(
            "Only 8-bit colour or greyscale photographic images are accepted.", "unsupported_pixels"
        )
    if rows * columns > max_pixels:
        raise DicomRefused(
            f"The image has too many pixels ({columns}x{rows}); the limit is {max_pixels:,}.",
            "too_many_pixels",
        )
    try:
        pixels = ds.pixel_array  # pydicom converts YBR to RGB
    except Exception as exc:  # noqa: BLE001 - any decoder failure means the pixels cannot be read
        raise DicomRefused("The DICOM pixel data is damaged and cannot be decoded.", "malformed") from exc
    expected = (rows, columns, 3) if samples == 3 else (rows, columns)
    if pixels.shape != expected or pixels.dtype != np.uint8:
        raise DicomRefused("The DICOM pixel data does not match its description.", "malformed")
    if samples == 1 and photometric == "MONOCHROME1":
        pixels = 255 - pixels
    image = Image.fromarray(pixels, mode="RGB" if samples == 3 else "L").convert("RGB")
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def export_time(moment: datetime | None = None) -> datetime:
    return _utc(moment or datetime.now(UTC))
