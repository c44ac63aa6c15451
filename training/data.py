"""Datasets (a CSV plus an image folder), row validation with line numbers, lesion-grouped stratified splits and
in-memory image caches built with the shared preprocessing module (``inference.preprocessing``)."""

from __future__ import annotations

import csv
import json
import math
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from inference.preprocessing import (
    ImageSpec,
    MetadataSpec,
    PreprocessingError,
    image_pixels,
    load_image,
    metadata_vector,
    normalise,
)

HAM_CLASSES: tuple[str, ...] = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
MALIGNANT_DIAGNOSES = frozenset({"mel", "bcc", "akiec", "scc", "melanoma"})
BENIGN_DIAGNOSES = frozenset(
    {
        "nv",
        "bkl",
        "df",
        "vasc",
        "nevus",
        "seborrheic keratosis",
        "lentigo nos",
        "solar lentigo",
        "lichenoid keratosis",
        "cafe-au-lait macule",
        "atypical melanocytic proliferation",
        "unknown",
    }
)
_SIIM_SITE = {
    "torso": "torso",
    "anterior torso": "torso",
    "posterior torso": "torso",
    "lateral torso": "torso",
    "head/neck": "head/neck",
    "upper extremity": "upper extremity",
    "lower extremity": "lower extremity",
    "palms/soles": "palms/soles",
    "oral/genital": "oral/genital",
}


class DatasetError(ValueError):
    """The dataset cannot be used at all (missing CSV, unknown format, bad rows under --strict)."""


@dataclass
class Record:
    image_id: str
    path: str
    label: int  # binary: 1 = malignant; multiclass: index into HAM_CLASSES
    malignant: int
    diagnosis: str
    age: float | None
    sex: str
    site: str
    group: str  # lesion / patient group used for splitting
    source: str
    line: int


@dataclass
class Dataset:
    csv_path: str
    task: str
    records: list[Record]
    bad_rows: list[dict] = field(default_factory=list)

    @property
    def labels(self) -> np.ndarray:
        return np.array([r.label for r in self.records], dtype=np.int64)

    def subset(self, indices) -> Dataset:
        return Dataset(self.csv_path, self.task, [self.records[i] for i in indices], [])

    def summary(self) -> dict:
        return {
            "csv": self.csv_path,
            "n": len(self.records),
            "bad_rows": len(self.bad_rows),
            "malignant": int(sum(r.malignant for r in self.records)),
            "by_source": dict(Counter(r.source for r in self.records)),
            "by_diagnosis": dict(Counter(r.diagnosis for r in self.records)),
        }


def _clean(value: str | None) -> str:
    return (value or "").strip()


def _age(value: str) -> float | None:
    value = _clean(value)
    if not value or value.lower() in ("nan", "unknown", "na"):
        return None
    return float(value)


DataArg = str | Path | list | tuple


def data_files(data: DataArg) -> list[Path]:
    """The CSVs ``data`` names: one CSV, several (a list: ``--data A.csv --data B.csv``), or a list file
    (``.txt`` / ``.list``: one CSV path per line, relative to the list file; blank lines and ``#`` comments
    are skipped)."""
    items = [data] if isinstance(data, str | Path) else list(data)
    files: list[Path] = []
    for item in items:
        path = Path(item)
        if path.suffix.lower() in (".txt", ".list"):
            if not path.is_file():
                raise DatasetError(f"{path}: no such list file")
            for line in path.read_text(encoding="utf-8").splitlines():
                line = line.split("#", 1)[0].strip()
                if line:
                    entry = Path(line)
                    files.append(entry if entry.is_absolute() else path.parent / entry)
        else:
            files.append(path)
    if not files:
        raise DatasetError("no data CSV given")
    return files


def load_dataset(
    csv_path: DataArg,
    *,
    task: str = "binary",
    strict: bool = False,
    check_images: bool = True,
    image_dir: str | Path | None = None,
) -> Dataset:
    """Read a TeleDerm labels CSV or a SIIM-ISIC 2020 CSV (or several, see :func:`data_files`: their rows are
    concatenated; lesion ids are shared across them, so a lesion listed in two CSVs is one group and stays in
    one fold). Bad rows (missing file, unreadable image, unknown label, impossible metadata, an image id that an
    earlier CSV already has) are collected with their CSV and line numbers; ``strict`` makes any of them
    fatal."""
    files = data_files(csv_path)
    if len(files) > 1:
        parts = [
            load_dataset(f, task=task, strict=strict, check_images=check_images, image_dir=image_dir)
            for f in files
        ]
        records, bad, seen = [], [], set()
        for part in parts:
            bad.extend({"csv": part.csv_path, **row} for row in part.bad_rows)
            for record in part.records:
                if record.image_id in seen:
                    bad.append(
                        {
                            "csv": part.csv_path,
                            "line": record.line,
                            "image": record.image_id,
                            "error": f"image id {record.image_id} is already listed by an earlier CSV",
                        }
                    )
                    continue
                seen.add(record.image_id)
                records.append(record)
        if strict and bad:
            details = "; ".join(f"{b['csv']} line {b['line']}: {b['error']}" for b in bad[:20])
            raise DatasetError(f"{len(bad)} bad row(s): {details}")
        return Dataset(" + ".join(p.csv_path for p in parts), task, records, bad)
    csv_path = files[0]
    if not csv_path.is_file():
        raise DatasetError(f"{csv_path}: no such CSV file")
    if task not in ("binary", "multiclass"):
        raise DatasetError(f"unknown task {task!r} (binary or multiclass)")
    base = Path(image_dir) if image_dir else csv_path.parent
    with csv_path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = set(reader.fieldnames or [])
        if {"image_id", "filename", "diagnosis"} <= columns:
            fmt = "teleder"
        elif "isic_id" in columns and columns & {"diagnosis", "diagnosis_1", "benign_malignant"}:
            fmt = "isic"
        elif {"image_name", "target"} <= columns:
            fmt = "siim"
            if image_dir is None and (csv_path.parent / "jpeg" / "train").is_dir():
                base = csv_path.parent / "jpeg" / "train"
        else:
            raise DatasetError(
                f"{csv_path}: unknown columns {sorted(columns)}; expected image_id,filename,diagnosis,... "
                "or the SIIM-ISIC 2020 columns image_name,...,target"
            )
        records, bad = [], []
        for line, row in enumerate(reader, start=2):
            try:
                records.append(_record(row, fmt, base, task, line, check_images))
            except (ValueError, PreprocessingError, OSError) as exc:
                bad.append(
                    {"line": line, "image": row.get("image_id") or row.get("image_name"), "error": str(exc)}
                )
    if strict and bad:
        details = "; ".join(f"line {b['line']}: {b['error']}" for b in bad[:20])
        raise DatasetError(f"{csv_path}: {len(bad)} bad row(s): {details}")
    if not records:
        raise DatasetError(f"{csv_path}: no usable rows ({len(bad)} bad)")
    return Dataset(str(csv_path), task, records, bad)


def isic_row(row: dict) -> dict:
    """An ISIC Archive metadata row (``isic_id``, ``anatom_site_general``, ``diagnosis`` or ``diagnosis_1..5``,
    ``age_approx``, ``sex``, ``lesion_id``/``patient_id``; e.g. TeleDerm's ``export_isic_csv``) as a TeleDerm
    labels row. The vocabulary mapping is ``interop.isic``; the image is ``filename`` or ``<isic_id>.jpg``."""
    from interop.isic import isic_label, site_from_isic

    isic_id = _clean(row.get("isic_id"))
    if not isic_id:
        raise ValueError("isic_id is empty")
    label = isic_label(row)
    if label.malignant is None:
        raise ValueError(f"ISIC diagnosis {label.diagnosis!r} gives no benign/malignant label")
    patient = _clean(row.get("patient_id"))
    return {
        "image_id": isic_id,
        "filename": _clean(row.get("filename")) or f"{isic_id}.jpg",
        "diagnosis": label.ham_class or label.diagnosis.lower() or "unknown",
        "malignant": str(label.malignant),
        "age": _clean(row.get("age_approx")),
        "sex": _clean(row.get("sex")),
        "anatom_site": site_from_isic(
            _clean(row.get("anatom_site_general")), _clean(row.get("anatom_site_1") or row.get("anatom_site"))
        ),
        "lesion_id": _clean(row.get("lesion_id")) or (f"patient:{patient}" if patient else ""),
        "source": _clean(row.get("source")) or "isic",
    }


def _record(row: dict, fmt: str, base: Path, task: str, line: int, check_images: bool) -> Record:
    if fmt == "isic":  # an ISIC Archive metadata CSV (isic_id, anatom_site_general, diagnosis, ...)
        row, fmt = isic_row(row), "teleder"
    if fmt == "teleder":
        image_id = _clean(row["image_id"])
        path = base / _clean(row["filename"])
        diagnosis = _clean(row.get("diagnosis")).lower()
        malignant_text = _clean(row.get("malignant"))
        if malignant_text in ("0", "1"):
            malignant = int(malignant_text)
        elif diagnosis in MALIGNANT_DIAGNOSES or diagnosis in BENIGN_DIAGNOSES:
            malignant = int(diagnosis in MALIGNANT_DIAGNOSES)
        else:
            raise ValueError(f"unknown label: diagnosis {diagnosis!r}, malignant {malignant_text!r}")
        age, sex, site = (
            _age(row.get("age", "")),
            _clean(row.get("sex")).lower(),
            _clean(row.get("anatom_site")),
        )
        group = _clean(row.get("lesion_id")) or f"image:{image_id}"
        source = _clean(row.get("source")) or "unknown"
    else:
        image_id = _clean(row["image_name"])
        path = base / f"{image_id}.jpg"
        diagnosis = _clean(row.get("diagnosis")).lower() or "unknown"
        target = _clean(row.get("target"))
        if target not in ("0", "1"):
            raise ValueError(f"unknown label: target {target!r}")
        malignant = int(target)
        age, sex = _age(row.get("age_approx", "")), _clean(row.get("sex")).lower()
        site = _SIIM_SITE.get(_clean(row.get("anatom_site_general_challenge")).lower(), "")
        group = (
            f"patient:{_clean(row.get('patient_id'))}"
            if _clean(row.get("patient_id"))
            else f"image:{image_id}"
        )
        source = "siim-isic-2020"
    metadata_vector(age, sex, site)  # raises on impossible metadata
    if task == "multiclass":
        if diagnosis not in HAM_CLASSES:
            raise ValueError(f"diagnosis {diagnosis!r} is not one of the HAM10000 classes")
        label = HAM_CLASSES.index(diagnosis)
    else:
        label = malignant
    if not path.is_file():
        raise ValueError(f"image file {path} does not exist")
    if check_images:
        try:
            with Image.open(path) as image:
                image.verify()
        except Exception as exc:  # noqa: BLE001 - any decoder failure is a bad row
            raise ValueError(f"unreadable image {path.name}: {exc}") from exc
    return Record(image_id, str(path), label, malignant, diagnosis, age, sex, site, group, source, line)


# ---------------------------------------------------------------- grouping and splits


def _dhash(path: str, bits: int = 16) -> np.ndarray:
    with Image.open(path) as image:
        small = np.asarray(
            image.convert("L").resize((bits + 1, bits), Image.Resampling.BILINEAR), dtype=np.int16
        )
    return (small[:, 1:] > small[:, :-1]).flatten()


def near_duplicate_groups(dataset: Dataset, *, max_distance: int = 12) -> int:
    """Merge groups of visually near-identical images (256-bit difference hash, Hamming distance <=
    ``max_distance``; distinct images of this set are almost all further apart, images of one lesion much
    further) so the same lesion uploaded under two ids cannot straddle a split. Returns the merges made."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        bits = np.array(list(pool.map(_dhash, [r.path for r in dataset.records])), dtype=bool)
    parent = {r.group: r.group for r in dataset.records}

    def find(g: str) -> str:
        while parent[g] != g:
            parent[g] = parent[parent[g]]
            g = parent[g]
        return g

    merges = 0
    for i in range(len(bits)):
        distance = np.count_nonzero(bits[i + 1 :] != bits[i], axis=1)
        for j in np.nonzero(distance <= max_distance)[0]:
            a, b = find(dataset.records[i].group), find(dataset.records[i + 1 + j].group)
            if a != b:
                parent[b] = a
                merges += 1
    for record in dataset.records:
        record.group = find(record.group)
    return merges


def group_folds(dataset: Dataset, *, k: int = 5, seed: int = 0) -> np.ndarray:
    """Fold index per record: whole groups go to one fold, balanced per (label, source) stratum."""
    rng = np.random.default_rng(seed)
    groups: dict[str, list[int]] = defaultdict(list)
    for index, record in enumerate(dataset.records):
        groups[record.group].append(index)
    strata: dict[tuple, list[str]] = defaultdict(list)
    for name, members in groups.items():
        label = max(dataset.records[i].label for i in members)
        strata[(label, dataset.records[members[0]].source)].append(name)
    folds = np.zeros(len(dataset.records), dtype=np.int64)
    load = np.zeros(k)
    for key in sorted(strata):
        names = strata[key]
        rng.shuffle(names)
        names.sort(key=lambda n: -len(groups[n]))  # big groups first, then fill the lightest fold
        stratum_load = np.zeros(k)
        for name in names:
            fold = int(np.lexsort((load, stratum_load))[0])
            folds[groups[name]] = fold
            stratum_load[fold] += len(groups[name])
            load[fold] += len(groups[name])
    return folds


@dataclass
class Split:
    train: list[str]
    val: list[str]
    fold: int
    k: int
    seed: int

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, path: str | Path) -> Split:
        return cls(**json.loads(Path(path).read_text()))

    def apply(self, dataset: Dataset) -> tuple[Dataset, Dataset]:
        index = {r.image_id: i for i, r in enumerate(dataset.records)}
        missing = [i for i in self.train + self.val if i not in index]
        if missing:
            raise DatasetError(
                f"the saved split names {len(missing)} images not in the dataset, e.g. {missing[:3]}"
            )
        return dataset.subset([index[i] for i in self.train]), dataset.subset([index[i] for i in self.val])


def make_split(dataset: Dataset, *, k: int = 5, fold: int = 0, seed: int = 0, dedup: bool = True) -> Split:
    if not 0 <= fold < k:
        raise DatasetError(f"fold {fold} is outside 0..{k - 1}")
    if dedup:
        near_duplicate_groups(dataset)
    folds = group_folds(dataset, k=k, seed=seed)
    ids = [r.image_id for r in dataset.records]
    return Split(
        [i for i, f in zip(ids, folds, strict=True) if f != fold],
        [i for i, f in zip(ids, folds, strict=True) if f == fold],
        fold,
        k,
        seed,
    )


def extend_split(
    base: Split, dataset: Dataset, *, k: int = 5, fold: int = 0, seed: int = 0, dedup: bool = True
) -> Split:
    """``base`` kept as it is, the images of ``dataset`` it does not name split into folds like
    ``make_split`` (lesion groups and near-duplicates kept together, stratified by label x source).

    Members trained on ``base.train`` stay unbiased on the new validation side: no image, lesion group or
    near-duplicate of a ``base`` image may land on the other side. Raises DatasetError when one would."""
    if not 0 <= fold < k:
        raise DatasetError(f"fold {fold} is outside 0..{k - 1}")
    known = dict.fromkeys(base.train, "train") | dict.fromkeys(base.val, "val")
    if dedup:
        near_duplicate_groups(dataset)
    new = [i for i, r in enumerate(dataset.records) if r.image_id not in known]
    if not new:
        raise DatasetError("the data hold no image that the base split does not already name")
    folds = group_folds(dataset.subset(new), k=k, seed=seed)
    side = dict(known)
    for index, f in zip(new, folds, strict=True):
        side[dataset.records[index].image_id] = "val" if f == fold else "train"
    sides_of_group: dict[str, set[str]] = defaultdict(set)
    for record in dataset.records:
        sides_of_group[record.group].add(side[record.image_id])
    straddling = sorted(g for g, sides in sides_of_group.items() if len(sides) > 1)
    if straddling:
        raise DatasetError(
            f"{len(straddling)} lesion groups would straddle the base split and the new images, "
            f"e.g. {straddling[:3]}: the new data share lesions (or near-duplicates) with the base split"
        )
    ids = [r.image_id for r in dataset.records]
    missing = [i for i in known if i not in set(ids)]
    if missing:
        raise DatasetError(f"the base split names {len(missing)} images not in the data, e.g. {missing[:3]}")
    return Split([i for i in ids if side[i] == "train"], [i for i in ids if side[i] == "val"], fold, k, seed)


# ---------------------------------------------------------------- tensors


def _pixels(path: str, spec: ImageSpec) -> np.ndarray:
    return image_pixels(load_image(path), spec)


def image_cache(dataset: Dataset, spec: ImageSpec, *, workers: int = 4) -> np.ndarray:
    """All images resized by the shared preprocessing, as uint8 (N, size, size, 3); normalise per batch."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pixels = list(pool.map(lambda r: _pixels(r.path, spec), dataset.records))
    return np.stack(pixels) if pixels else np.zeros((0, spec.size, spec.size, 3), np.uint8)


def metadata_matrix(dataset: Dataset, spec: MetadataSpec | None = None) -> np.ndarray:
    spec = spec or MetadataSpec()
    if not dataset.records:
        return np.zeros((0, spec.size), np.float32)
    return np.stack([metadata_vector(r.age, r.sex, r.site, spec) for r in dataset.records])


def drop_metadata(
    metadata: np.ndarray, rate: float, rng: np.random.Generator, spec: MetadataSpec | None = None
) -> np.ndarray:
    """Metadata dropout: each of age, sex and site of each row becomes "unknown" (value cleared, missing flag
    set: exactly what ``metadata_vector`` gives for a blank field) with probability ``rate``, independently.
    So the model sees every missingness pattern with every label and every source, and cannot learn "age
    missing" as a shortcut for one source, nor lean on age where the image speaks. Returns a new array."""
    if rate <= 0:
        return metadata
    spec = spec or MetadataSpec()
    out = np.array(metadata, dtype=np.float32, copy=True)
    n_sex, n_site = len(spec.sexes), len(spec.sites)
    fields = (
        (slice(0, 1), 1),  # age value, age missing flag
        (slice(2, 2 + n_sex), 2 + n_sex),
        (slice(3 + n_sex, 3 + n_sex + n_site), 3 + n_sex + n_site),
    )
    for values, flag in fields:
        drop = rng.random(len(out)) < rate
        out[drop, values] = 0.0
        out[drop, flag] = 1.0
    return out


def normalised(pixels: np.ndarray, spec: ImageSpec) -> np.ndarray:
    return normalise(pixels, spec.normalisation)


def class_weights(labels: np.ndarray, n_classes: int) -> dict[int, float]:
    counts = np.bincount(labels, minlength=n_classes).astype(float)
    total = counts.sum()
    return {i: float(total / (n_classes * c)) if c else 0.0 for i, c in enumerate(counts)}


def batches(n: int, batch_size: int) -> int:
    return max(1, math.ceil(n / batch_size))
