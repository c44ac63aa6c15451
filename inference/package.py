"""Model package format: ``manifest.json`` plus the member ONNX files it names (pure: no Django, no ORT).

A package is a folder, or a zip of one. :func:`parse_manifest` checks every field and raises
:class:`PackageError` with a message that names the field at fault; :func:`verify_files` checks that each
member file is where the manifest says and has the recorded sha256. The format is documented field by field,
with the reason for each, in ``docs/model-package.md``.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from inference.calibration import (
    Calibration,
    CalibrationError,
    Differential,
    parse_calibration,
    parse_differential,
)
from inference.ood import METHODS as GATE_METHODS
from inference.preprocessing import ImageSpec, MetadataSpec, PreprocessingError
from inference.quality import thresholds_from

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
MODEL_CARD_NAMES = ("MODEL_CARD.md", "model_card.md")
TASKS = ("binary", "multiclass")
# Names become folder names under TELEDER_MODEL_DIR: keep them to a safe alphabet.
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
MAX_MANIFEST_BYTES = 1024 * 1024
MAX_PACKAGE_BYTES = 4 * 1024**3
# A member's numeric precision (``precision`` in its manifest entry; absent means fp32, as in every package
# written before ``python -m training quantize`` existed).
PRECISIONS = ("fp32", "fp16", "bf16", "int8")


class PackageError(ValueError):
    """The package is corrupt or incompatible; the message says what is wrong."""


@dataclass(frozen=True)
class MemberSpec:
    """One ensemble member: its ONNX file, input/output names and how its image is preprocessed."""

    name: str
    file: str
    sha256: str
    weight: float
    image_input: str
    metadata_input: str | None
    output: str
    image: ImageSpec
    # Extra graph tensors the runtime exposes as outputs at load time (the member file is not changed):
    # key (e.g. "classes") -> tensor name inside the member's graph. See ``inference.sessions.expose_outputs``.
    outputs: dict[str, str] = field(default_factory=dict)
    precision: str = "fp32"


@dataclass(frozen=True)
class Manifest:
    format_version: int
    name: str
    version: str
    task: str
    class_names: tuple[str, ...]
    positive_classes: tuple[str, ...]
    metadata: MetadataSpec
    members: tuple[MemberSpec, ...]
    threshold: float
    risk_bands: dict[str, float]
    tta_hflip: bool
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    calibration: Calibration | None = None
    differential: Differential | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def label(self) -> str:
        return f"{self.name} {self.version}"

    @property
    def output_width(self) -> int:
        """Columns a member's output has: 1 (or 2) for binary, one per class for multiclass."""
        return len(self.class_names) if self.task == "multiclass" else 1

    def calibrate(self, p: Any) -> Any:
        """The calibrated probability (the identity for a package without ``calibration``)."""
        return p if self.calibration is None else self.calibration.apply(p)

    @property
    def precision(self) -> str:
        """The members' precision: one of :data:`PRECISIONS`, or "mixed" when they differ."""
        kinds = {m.precision for m in self.members}
        return kinds.pop() if len(kinds) == 1 else "mixed"

    @property
    def positive_indices(self) -> tuple[int, ...]:
        return tuple(self.class_names.index(c) for c in self.positive_classes)


def _require(data: dict, key: str, kind: type | tuple[type, ...], where: str = "manifest") -> Any:
    if key not in data:
        raise PackageError(f"{where}: '{key}' is missing")
    value = data[key]
    if not isinstance(value, kind) or (kind in (int, float, (int, float)) and isinstance(value, bool)):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise PackageError(f"{where}: '{key}' must be {names}, got {type(value).__name__}")
    return value


def _unit(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise PackageError(f"{where} must be a number")
    if not 0.0 <= float(value) <= 1.0:
        raise PackageError(f"{where} must be within [0, 1], got {value}")
    return float(value)


def _member_file(value: str, where: str) -> str:
    """A member file is a plain relative path inside the package: no absolute paths, no '..'."""
    path = PurePosixPath(value)
    if not value or path.is_absolute() or "\\" in value or any(part in ("..", "") for part in path.parts):
        raise PackageError(f"{where}: file {value!r} must be a relative path inside the package")
    if path.suffix.lower() != ".onnx":
        raise PackageError(f"{where}: file {value!r} must be an .onnx file")
    return str(path)


def _parse_member(data: Any, index: int, manifest_metadata: MetadataSpec) -> MemberSpec:
    where = f"members[{index}]"
    if not isinstance(data, dict):
        raise PackageError(f"{where} must be an object")
    name = _require(data, "name", str, where)
    where = f"member '{name}'"
    file = _member_file(_require(data, "file", str, where), where)
    sha = _require(data, "sha256", str, where).lower()
    if not _SHA256.match(sha):
        raise PackageError(f"{where}: sha256 must be 64 hexadecimal characters")
    weight = data.get("weight", 1.0)
    if (
        isinstance(weight, bool)
        or not isinstance(weight, int | float)
        or not math.isfinite(weight)
        or weight <= 0
    ):
        raise PackageError(f"{where}: weight must be a positive number")
    inputs = _require(data, "inputs", dict, where)
    image_input = _require(inputs, "image", str, f"{where} inputs")
    metadata_input = inputs.get("metadata")
    if metadata_input is not None and not isinstance(metadata_input, str):
        raise PackageError(f"{where}: inputs.metadata must be an input name or null")
    output = _require(data, "output", str, where)
    precision = data.get("precision", "fp32")
    if precision not in PRECISIONS:
        raise PackageError(f"{where}: precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    try:
        image = ImageSpec.from_dict(_require(data, "preprocessing", dict, where))
    except PreprocessingError as exc:
        raise PackageError(f"{where}: preprocessing: {exc}") from exc
    except (TypeError, ValueError) as exc:
        raise PackageError(f"{where}: preprocessing is invalid ({exc})") from exc
    outputs = _parse_member_outputs(data.get("outputs"), where)
    return MemberSpec(
        name=name,
        file=file,
        sha256=sha,
        weight=float(weight),
        image_input=image_input,
        metadata_input=metadata_input,
        output=output,
        image=image,
        precision=precision,
        outputs=outputs,
    )


def _parse_member_outputs(data: Any, where: str) -> dict[str, str]:
    """``outputs``: {key: tensor name}, the member's extra outputs (optional; absent in 1.2.x packages)."""
    if data is None:
        return {}
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and k and isinstance(v, str) and v for k, v in data.items()
    ):
        raise PackageError(f'{where}: outputs must map names to tensor names, e.g. {{"classes": "..."}}')
    return dict(data)


def _parse_metadata(data: Any) -> MetadataSpec:
    if not isinstance(data, dict):
        raise PackageError("manifest: 'metadata' must be an object")
    try:
        spec = MetadataSpec.from_dict(data)
    except (TypeError, ValueError) as exc:
        raise PackageError(f"manifest: metadata is invalid ({exc})") from exc
    if not math.isfinite(spec.age_scale) or spec.age_scale <= 0:
        raise PackageError("manifest: metadata.age_scale must be a positive number")
    for key, values in (("sexes", spec.sexes), ("sites", spec.sites)):
        if not all(isinstance(v, str) and v for v in values) or len(set(values)) != len(values):
            raise PackageError(f"manifest: metadata.{key} must be distinct, non-empty strings")
    if "size" in data and data["size"] != spec.size:
        raise PackageError(
            f"manifest: metadata.size is {data['size']} but the vocabularies give {spec.size} features"
        )
    return spec


# The risk-band rule. Its one home: the registry, the worker and the API all read bands through these.
HIGH_RISK_FLOOR = 0.8


def default_risk_bands(threshold: float) -> dict[str, float]:
    """Bands of a manifest that names none: medium from the decision threshold, high from 0.8 (or the
    threshold when that is higher, so that medium never lies above high)."""
    return {"medium": threshold, "high": max(threshold, HIGH_RISK_FLOOR)}


def risk_bands_of(manifest: dict[str, Any], threshold: float) -> dict[str, float]:
    """The bands a stored manifest declares, else the default bands for ``threshold``."""
    return manifest.get("risk_bands") or default_risk_bands(threshold)


def risk_band(probability: float, bands: dict[str, float]) -> str:
    """``low`` below ``bands['medium']``, ``high`` at or above ``bands['high']``, ``medium`` in between."""
    if probability >= bands["high"]:
        return "high"
    if probability >= bands["medium"]:
        return "medium"
    return "low"


def parse_manifest(data: Any) -> Manifest:
    """Validate a manifest (as loaded from JSON) and return it typed. Raises :class:`PackageError`."""
    if not isinstance(data, dict):
        raise PackageError("manifest: must be a JSON object")
    fmt = _require(data, "format_version", int)
    if fmt != FORMAT_VERSION:
        raise PackageError(
            f"manifest: format_version {fmt} is not supported (this platform reads {FORMAT_VERSION})"
        )
    name = _require(data, "name", str)
    version = _require(data, "version", str)
    for key, value in (("name", name), ("version", version)):
        if not _SAFE_NAME.match(value):
            raise PackageError(f"manifest: {key} {value!r} may only hold letters, digits, '.', '_' and '-'")
    task = _require(data, "task", str)
    if task not in TASKS:
        raise PackageError(f"manifest: task must be one of {', '.join(TASKS)}, got {task!r}")
    class_names = tuple(_require(data, "class_names", list))
    if len(class_names) < 2 or not all(isinstance(c, str) and c for c in class_names):
        raise PackageError("manifest: class_names must list at least two class names")
    if len(set(class_names)) != len(class_names):
        raise PackageError("manifest: class_names has duplicates")
    if task == "binary" and len(class_names) != 2:
        raise PackageError("manifest: a binary task has exactly two class_names")
    positive = data.get("positive_class")
    positive_classes = (positive,) if isinstance(positive, str) else tuple(positive or ())
    if not positive_classes or any(c not in class_names for c in positive_classes):
        raise PackageError(
            f"manifest: positive_class {positive!r} must name one or more of {list(class_names)}"
        )
    if task == "binary" and len(positive_classes) != 1:
        raise PackageError("manifest: a binary task has exactly one positive_class")
    metadata = _parse_metadata(_require(data, "metadata", dict))
    members_data = _require(data, "members", list)
    if not members_data:
        raise PackageError("manifest: 'members' lists no ONNX files")
    members = tuple(_parse_member(m, i, metadata) for i, m in enumerate(members_data))
    names = [m.name for m in members]
    if len(set(names)) != len(names):
        raise PackageError("manifest: member names must be unique")
    if len({m.file for m in members}) != len(members):
        raise PackageError("manifest: two members name the same file")
    threshold = _unit(data.get("threshold"), "manifest: threshold")
    bands = data.get("risk_bands")
    if bands is None:
        bands = default_risk_bands(threshold)
    if not isinstance(bands, dict) or set(bands) != {"medium", "high"}:
        raise PackageError("manifest: risk_bands must be an object with exactly 'medium' and 'high'")
    risk_bands = {k: _unit(v, f"manifest: risk_bands.{k}") for k, v in bands.items()}
    if risk_bands["medium"] > risk_bands["high"]:
        raise PackageError("manifest: risk_bands.medium must not be above risk_bands.high")
    tta = data.get("tta") or {}
    if not isinstance(tta, dict) or not isinstance(tta.get("hflip", False), bool):
        raise PackageError('manifest: tta must be an object such as {"hflip": true}')
    for key in ("training", "metrics"):
        if not isinstance(data.get(key, {}), dict):
            raise PackageError(f"manifest: '{key}' must be an object")
    try:
        calibration = parse_calibration(data.get("calibration"))
        differential = parse_differential(data.get("differential"), {m.name: m.outputs for m in members})
    except CalibrationError as exc:
        raise PackageError(str(exc)) from exc
    _parse_gate(data, names)
    return Manifest(
        format_version=fmt,
        name=name,
        version=version,
        task=task,
        class_names=class_names,
        positive_classes=positive_classes,
        metadata=metadata,
        members=members,
        threshold=threshold,
        risk_bands=risk_bands,
        tta_hflip=bool(tta.get("hflip", False)),
        training=dict(data.get("training") or {}),
        metrics=dict(data.get("metrics") or {}),
        calibration=calibration,
        differential=differential,
        raw=data,
    )


def read_manifest(folder: Path) -> tuple[Manifest, str]:
    """Parse ``folder/manifest.json``; return the manifest and the sha256 of the file's bytes."""
    path = Path(folder) / MANIFEST_NAME
    if not path.is_file():
        raise PackageError(f"{MANIFEST_NAME} is missing from the package")
    raw = path.read_bytes()
    if len(raw) > MAX_MANIFEST_BYTES:
        raise PackageError(f"{MANIFEST_NAME} is larger than {MAX_MANIFEST_BYTES // 1024} KB")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PackageError(f"{MANIFEST_NAME} is not valid JSON ({exc})") from exc
    return parse_manifest(data), hashlib.sha256(raw).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(chunk)
    return digest.hexdigest()


def member_entry(
    name: str,
    onnx_file: Path,
    spec: ImageSpec,
    output: str,
    *,
    weight: float = 1.0,
    outputs: dict[str, str] | None = None,
) -> dict:
    """One ``members`` entry of a binary dual-input member, with the file's sha256 (and its extra
    ``outputs``, tensor names the runtime exposes at load time, when given)."""
    entry = {
        "name": name,
        "file": Path(onnx_file).name,
        "sha256": sha256_file(Path(onnx_file)),
        "weight": weight,
        "inputs": {"image": "image", "metadata": "metadata"},
        "output": output,
        "preprocessing": spec.to_dict(),
    }
    if outputs:
        entry["outputs"] = dict(outputs)
    return entry


def floor6(value: float) -> float:
    """``value`` rounded down to 6 decimals for the manifest. Never up: a threshold chosen as the score of the
    last malignant lesion that must still be flagged (see ``training.evaluate.threshold_for_sensitivity``) would,
    rounded to nearest, land just above that score and miss the lesion, so the shipped threshold would fall
    short of its target sensitivity."""
    return math.floor(float(value) * 1_000_000) / 1_000_000


def write_manifest(
    folder: Path,
    *,
    name: str,
    version: str,
    members: list[dict],
    threshold: float,
    risk_bands: dict,
    tta: bool = False,
    training: dict | None = None,
    metrics: dict | None = None,
    calibration: dict | None = None,
    differential: dict | None = None,
) -> dict:
    """Write a binary package's ``manifest.json`` (the one writer: training, tests and benchmarks use it).
    ``calibration`` and ``differential`` (see ``inference.calibration``) are written only when given."""
    manifest = {
        "format_version": FORMAT_VERSION,
        "name": name,
        "version": version,
        "task": "binary",
        "class_names": ["benign", "malignant"],
        "positive_class": "malignant",
        "metadata": MetadataSpec().to_dict(),
        "members": members,
        "threshold": floor6(threshold),
        "risk_bands": {k: floor6(v) for k, v in risk_bands.items()},
        "tta": {"hflip": tta},
        "training": training or {},
        "metrics": metrics or {},
    }
    if calibration is not None:
        manifest["calibration"] = calibration
    if differential is not None:
        manifest["differential"] = differential
    (Path(folder) / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2))
    return manifest


def verify_files(folder: Path, manifest: Manifest) -> None:
    """Every member file exists inside ``folder`` and matches its recorded sha256."""
    root = Path(folder).resolve()
    for member in manifest.members:
        path = (root / member.file).resolve()
        if not path.is_relative_to(root):
            raise PackageError(f"member '{member.name}': file {member.file!r} lies outside the package")
        if not path.is_file():
            raise PackageError(f"member '{member.name}': file {member.file} is missing from the package")
        actual = sha256_file(path)
        if actual != member.sha256:
            raise PackageError(
                f"member '{member.name}': checksum mismatch for {member.file} "
                f"(manifest {member.sha256[:12]}..., file {actual[:12]}...): the file is corrupt or was replaced"
            )
    _verify_gate_files(root, manifest)


# AI safety gate (docs/model-package.md, "gate") ------------------------------------------------------------


def gate_quality_thresholds(manifest: Manifest) -> dict[str, float]:
    """The quality thresholds: code defaults overridden by ``gate.quality``. Without an explicit ``min_side``,
    an image as large as the smallest member input is never "too small" (tiny test models take 32 px)."""
    gate = manifest.raw.get("gate") or {}
    try:
        thresholds = thresholds_from(gate.get("quality"))
    except ValueError as exc:
        raise PackageError(f"manifest: gate.quality: {exc}") from exc
    if "min_side" not in (gate.get("quality") or {}):
        thresholds["min_side"] = float(min(thresholds["min_side"], *(m.image.size for m in manifest.members)))
    return thresholds


def member_output(manifest: Manifest, index: int, key: str) -> str | None:
    """The tensor name a member declares under ``outputs.<key>`` (an extra output exposed at load time)."""
    outputs = manifest.raw["members"][index].get("outputs") or {}
    value = outputs.get(key) if isinstance(outputs, dict) else None
    return value if isinstance(value, str) and value else None


def gate_ood_spec(manifest: Manifest) -> dict | None:
    """The validated ``gate.ood`` object, or None when the package has no OOD gate (the gate is then off)."""
    return _parse_ood(
        (manifest.raw.get("gate") or {}).get("ood"), manifest.raw, [m.name for m in manifest.members]
    )


def _parse_ood(ood: Any, data: dict, names: list[str]) -> dict | None:
    if ood is None:
        return None
    where = "manifest: gate.ood"
    if not isinstance(ood, dict):
        raise PackageError(f"{where} must be an object")
    if ood.get("method") not in GATE_METHODS:
        raise PackageError(f"{where}.method must be one of {', '.join(GATE_METHODS)}")
    array_names = GATE_METHODS[ood["method"]]
    output = _require(ood, "output", str, where)
    threshold = ood.get("threshold")
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not math.isfinite(threshold):
        raise PackageError(f"{where}.threshold must be a number")
    if threshold <= 0:
        raise PackageError(f"{where}.threshold must be positive")
    arrays = _require(ood, "arrays", dict, where)
    # The gate scores the members it was fitted on: all of them, or some (a member added to a package later
    # serves its probability without being part of the gate until the gate is fitted again).
    unknown = sorted(set(arrays) - set(names))
    if not arrays or unknown:
        raise PackageError(
            f"{where}.arrays must have one entry per gated member, each one of {', '.join(names)}"
            + (f" (not a member: {', '.join(unknown)})" if unknown else "")
        )
    for index, name in enumerate(names):
        if name not in arrays:
            continue
        outputs = data["members"][index].get("outputs") or {}
        if not isinstance(outputs, dict) or not isinstance(outputs.get(output), str):
            raise PackageError(f"member '{name}': outputs.{output} (the gate's feature tensor) is missing")
        entry = arrays[name]
        if not isinstance(entry, dict) or set(entry) != set(array_names):
            raise PackageError(f"{where}.arrays.{name} must name the arrays {', '.join(array_names)}")
        for array in array_names:
            item = entry[array]
            spot = f"{where}.arrays.{name}.{array}"
            if not isinstance(item, dict):
                raise PackageError(f"{spot} must be an object with file and sha256")
            file = _require(item, "file", str, spot)
            path = PurePosixPath(file)
            if path.is_absolute() or "\\" in file or ".." in path.parts or path.suffix != ".npy":
                raise PackageError(f"{spot}: file {file!r} must be a relative .npy path inside the package")
            if not _SHA256.match(str(_require(item, "sha256", str, spot)).lower()):
                raise PackageError(f"{spot}: sha256 must be 64 hexadecimal characters")
    return ood


def _parse_gate(data: dict, names: list[str]) -> None:
    gate = data.get("gate")
    if gate is None:
        return
    if not isinstance(gate, dict):
        raise PackageError("manifest: 'gate' must be an object")
    try:
        thresholds_from(gate.get("quality"))
    except ValueError as exc:
        raise PackageError(f"manifest: gate.quality: {exc}") from exc
    _parse_ood(gate.get("ood"), data, names)


def gate_files(manifest: Manifest) -> list[tuple[str, str, str]]:
    """(member, file, sha256) of every gate array the manifest lists."""
    ood = gate_ood_spec(manifest)
    if ood is None:
        return []
    return [
        (member, item["file"], item["sha256"].lower())
        for member, entry in ood["arrays"].items()
        for item in entry.values()
    ]


def _verify_gate_files(root: Path, manifest: Manifest) -> None:
    for member, file, sha in gate_files(manifest):
        path = (root / file).resolve()
        if not path.is_relative_to(root):
            raise PackageError(f"gate array {file!r} lies outside the package")
        if not path.is_file():
            raise PackageError(f"gate array {file} (member '{member}') is missing from the package")
        actual = sha256_file(path)
        if actual != sha:
            raise PackageError(
                f"gate array {file}: checksum mismatch (manifest {sha[:12]}..., file {actual[:12]}...): "
                "the file is corrupt or was replaced"
            )


def model_card_file(folder: Path) -> Path | None:
    for name in MODEL_CARD_NAMES:
        if (Path(folder) / name).is_file():
            return Path(folder) / name
    return None


def package_files(folder: Path, manifest: Manifest) -> list[str]:
    """The files that make up the package (what is copied on registration; anything else is left behind)."""
    files = [MANIFEST_NAME, *(m.file for m in manifest.members), *(f for _, f, _ in gate_files(manifest))]
    card = model_card_file(folder)
    if card is not None:
        files.append(card.name)
    return files
