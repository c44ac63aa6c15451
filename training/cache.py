"""A compact, portable image cache: every image of a split, resized by the shared preprocessing to one member's
input size and re-encoded (JPEG or WebP), packed into part files small enough to travel with a device call.

A lent accelerator machine has no network and receives at most 64 MiB per call, so the training images cannot
travel as image folders (derm + derm-extra are 183 MB of originals). ``python -m training cache-images`` writes

    DIR/index.json.gz    format, image spec, split, encoding, parts (size, sha256), one entry per image
    DIR/split.json       the split (``training.data.Split``), for ``package --split`` on this machine
    DIR/part-000.bin ... the encoded images, back to back (offsets in the index), each part <= --part-mib

and ``python -m training fit --cache DIR`` reads it instead of the CSVs and image folders: the records (labels,
diagnosis, age, sex, site, lesion group, source, CSV line) and the split come from the index, the pixels from the
parts. Images are stored after the resize (and colour correction) that ``inference.preprocessing`` applies, so a
member reads exactly what it would have computed, up to the lossy encoding (its mean error is in the index).
Pure Pillow + NumPy: no TensorFlow, Keras or torch.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from inference.preprocessing import ImageSpec, image_pixels, load_image
from training import data as data_mod

FORMAT = "teleder-image-cache"
VERSION = 1
INDEX = "index.json.gz"  # gzip: 0.5 MB instead of 3 MB for 12,783 images, room a call needs
# What one device call may carry in all; a part must leave room for the working tree beside it.
CALL_LIMIT_MIB = 64
FORMATS = ("jpeg", "webp")


class CacheError(data_mod.DatasetError):
    """The cache cannot be built or read (bad options, missing or damaged part, wrong image size)."""


@dataclass(frozen=True)
class Encoding:
    format: str = "jpeg"
    quality: int = 90

    def validate(self) -> None:
        if self.format not in FORMATS:
            raise CacheError(f"--format must be one of {', '.join(FORMATS)}, not {self.format!r}")
        if not 1 <= self.quality <= 100:
            raise CacheError(f"--quality must be between 1 and 100, got {self.quality}")

    def encode(self, pixels: np.ndarray) -> bytes:
        buffer = io.BytesIO()
        if self.format == "jpeg":
            Image.fromarray(pixels).save(buffer, "JPEG", quality=self.quality)
        else:
            Image.fromarray(pixels).save(buffer, "WEBP", quality=self.quality, method=4)
        return buffer.getvalue()


def decode(blob: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(blob)) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


def _encoded(path: str, spec: ImageSpec, encoding: Encoding) -> tuple[bytes, float]:
    pixels = image_pixels(load_image(path), spec)
    blob = encoding.encode(pixels)
    error = float(np.abs(decode(blob).astype(np.int16) - pixels).mean())
    return blob, error


def build_cache(
    data: data_mod.DataArg,
    out: str | Path,
    *,
    image_size: int,
    split: str | Path | None = None,
    k: int = 5,
    fold: int = 0,
    seed: int = 0,
    resize: str = "squash",
    colour: str = "none",
    encoding: Encoding | None = None,
    part_mib: float = 56.0,
    strict: bool = False,
    workers: int = 2,
) -> dict:
    """Write the cache of every train and validation image of ``split`` (or of a lesion-grouped split made here,
    ``k``/``fold``/``seed``) into the new folder ``out``; returns the index's summary."""
    started = time.monotonic()
    encoding = encoding or Encoding()
    encoding.validate()
    if not 0 < part_mib < CALL_LIMIT_MIB:
        raise CacheError(
            f"--part-mib must be above 0 and below {CALL_LIMIT_MIB} (one device call), got {part_mib}"
        )
    spec = ImageSpec(image_size, resize, "lite", colour)
    spec.validate()
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise CacheError(f"{out} is not empty: remove it or choose another --out")
    dataset = data_mod.load_dataset(data, strict=strict)
    chosen = data_mod.Split.load(split) if split else data_mod.make_split(dataset, k=k, fold=fold, seed=seed)
    chosen.apply(dataset)  # a split naming an image the data lacks is an error
    role_of = {**dict.fromkeys(chosen.train, "train"), **dict.fromkeys(chosen.val, "val")}
    # in the CSVs' order, as load_dataset gives them (so fit --limit N takes the same first N images)
    roles = [(role_of[r.image_id], r) for r in dataset.records if r.image_id in role_of]
    out.mkdir(parents=True, exist_ok=True)
    csvs = [str(p) for p in data_mod.data_files(data)]
    part_limit = int(part_mib * 2**20)
    parts: list[dict] = []
    images: list[dict] = []
    errors: list[float] = []
    handle, digest, written = None, None, 0

    def close_part() -> None:
        nonlocal handle
        if handle is not None:
            handle.close()
            parts[-1].update(bytes=written, sha256=digest.hexdigest())
            handle = None

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        encoded = pool.map(lambda item: _encoded(item[1].path, spec, encoding), roles)
        for (role, record), (blob, error) in zip(roles, encoded, strict=True):
            if len(blob) > part_limit:
                raise CacheError(f"{record.image_id} alone ({len(blob)} bytes) exceeds --part-mib {part_mib}")
            if handle is None or written + len(blob) > part_limit:
                close_part()
                name = f"part-{len(parts):03d}.bin"
                parts.append({"file": name})
                handle, digest, written = (out / name).open("wb"), hashlib.sha256(), 0
            handle.write(blob)
            digest.update(blob)
            images.append(_entry(record, role, csvs, len(parts) - 1, written, len(blob)))
            written += len(blob)
            errors.append(error)
    close_part()
    chosen.save(out / "split.json")
    index = {
        "format": FORMAT,
        "version": VERSION,
        "image_spec": {"image_size": spec.size, "resize": spec.resize, "colour": spec.colour},
        "encoding": {"format": encoding.format, "quality": encoding.quality},
        "encoding_error": {
            "mean_abs": round(float(np.mean(errors)), 3) if errors else 0.0,
            "worst_image_mean_abs": round(float(np.max(errors)), 3) if errors else 0.0,
            "unit": "mean |decoded - resized| per pixel and channel, 0-255 scale",
        },
        "data": csvs,
        "split": {"fold": chosen.fold, "k": chosen.k, "seed": chosen.seed},
        "bad_rows": dataset.bad_rows,
        "outside_split": len(dataset.records) - len(roles),
        "parts": parts,
        "images": images,
        "build_s": round(time.monotonic() - started, 1),
    }
    with gzip.open(out / (INDEX + ".tmp"), "wt", encoding="utf-8") as handle:
        json.dump(index, handle, separators=(",", ":"))
    (out / (INDEX + ".tmp")).rename(out / INDEX)
    return summary(index)


def _entry(record: data_mod.Record, role: str, csvs: list[str], part: int, offset: int, length: int) -> dict:
    # the CSV whose folder holds the image (the deepest one, if folders nest): for error messages
    holders = [c for c in csvs if Path(record.path).is_relative_to(Path(c).parent)]
    csv_name = max(holders, key=lambda c: len(Path(c).parent.parts), default=csvs[0])
    return {
        "image_id": record.image_id,
        "part": part,
        "offset": offset,
        "length": length,
        "split": role,
        "malignant": record.malignant,
        "diagnosis": record.diagnosis,
        "age": record.age,
        "sex": record.sex,
        "site": record.site,
        "group": record.group,
        "source": record.source,
        "csv": csvs.index(csv_name),
        "line": record.line,
    }


def summary(index: dict) -> dict:
    sizes = [p["bytes"] for p in index["parts"]]
    return {
        "images": len(index["images"]),
        "train": sum(1 for i in index["images"] if i["split"] == "train"),
        "val": sum(1 for i in index["images"] if i["split"] == "val"),
        "parts": len(sizes),
        "largest_part_mib": round(max(sizes, default=0) / 2**20, 2),
        "total_mib": round(sum(sizes) / 2**20, 2),
        "image_spec": index["image_spec"],
        "encoding": index["encoding"],
        "encoding_error": index["encoding_error"]["mean_abs"],
        "bad_rows": len(index["bad_rows"]),
        "build_s": index["build_s"],
    }


class ImageCache:
    """A cache folder opened for reading: the index is checked on opening, each part when it is first read."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        path = self.folder / INDEX
        if not path.is_file():
            raise CacheError(f"{self.folder} holds no image cache ({INDEX} is missing)")
        try:
            with gzip.open(path, "rt", encoding="utf-8") as handle:
                self.index = json.load(handle)
        except (OSError, EOFError, json.JSONDecodeError) as exc:
            raise CacheError(f"{path} is not a gzipped JSON index: {exc}") from exc
        if self.index.get("format") != FORMAT or self.index.get("version") != VERSION:
            raise CacheError(f"{path} is not a {FORMAT} version {VERSION} index")
        self._by_id = {entry["image_id"]: entry for entry in self.index["images"]}
        self._parts: dict[int, bytes] = {}

    @property
    def data(self) -> list[str]:
        return list(self.index["data"])

    def missing_parts(self) -> list[str]:
        """Parts that are absent or of the wrong size (a call that has not brought them yet)."""
        return [
            p["file"]
            for p in self.index["parts"]
            if not (self.folder / p["file"]).is_file()
            or (self.folder / p["file"]).stat().st_size != p["bytes"]
        ]

    def check(self) -> None:
        missing = self.missing_parts()
        if missing:
            raise CacheError(
                f"{self.folder}: {len(missing)} part(s) missing or incomplete: {', '.join(missing)}"
            )

    def _part(self, number: int) -> bytes:
        if number not in self._parts:
            meta = self.index["parts"][number]
            path = self.folder / meta["file"]
            if not path.is_file():
                raise CacheError(f"{path} is missing (the index lists it)")
            blob = path.read_bytes()
            if hashlib.sha256(blob).hexdigest() != meta["sha256"]:
                raise CacheError(f"{path} is damaged or from another build (sha256 differs from the index)")
            self._parts[number] = blob
        return self._parts[number]

    def dataset(self, task: str = "binary") -> data_mod.Dataset:
        """The cached images as a ``training.data.Dataset`` (as ``load_dataset`` would read the CSVs): for the
        multiclass task an image whose diagnosis is not one of the seven HAM10000 classes is a bad row."""
        records, bad = [], []
        for entry in self.index["images"]:
            diagnosis = entry["diagnosis"]
            if task == "multiclass":
                if diagnosis not in data_mod.HAM_CLASSES:
                    bad.append(
                        {
                            "csv": self.index["data"][entry["csv"]],
                            "line": entry["line"],
                            "image": entry["image_id"],
                            "error": f"diagnosis {diagnosis!r} is not one of the HAM10000 classes",
                        }
                    )
                    continue
                label = data_mod.HAM_CLASSES.index(diagnosis)
            else:
                label = entry["malignant"]
            part = self.index["parts"][entry["part"]]["file"]
            records.append(
                data_mod.Record(
                    entry["image_id"],
                    str(self.folder / part),
                    label,
                    entry["malignant"],
                    diagnosis,
                    entry["age"],
                    entry["sex"],
                    entry["site"],
                    entry["group"],
                    entry["source"],
                    entry["line"],
                )
            )
        if not records:
            raise CacheError(f"{self.folder}: no usable images for the {task} task")
        name = f"cache {self.folder} (" + " + ".join(self.index["data"]) + ")"
        return data_mod.Dataset(name, task, records, list(self.index["bad_rows"]) + bad)

    def split(self) -> data_mod.Split:
        meta = self.index["split"]
        return data_mod.Split(
            [e["image_id"] for e in self.index["images"] if e["split"] == "train"],
            [e["image_id"] for e in self.index["images"] if e["split"] == "val"],
            meta["fold"],
            meta["k"],
            meta["seed"],
        )

    def check_spec(self, spec: ImageSpec) -> None:
        cached = self.index["image_spec"]
        wanted = {"image_size": spec.size, "resize": spec.resize, "colour": spec.colour}
        if cached != wanted:
            raise CacheError(
                f"{self.folder} holds {cached['image_size']} px {cached['resize']} images (colour "
                f"{cached['colour']}); this member needs {spec.size} px {spec.resize} (colour {spec.colour}): "
                f"build a cache with --image-size {spec.size}"
            )

    def pixels(self, dataset: data_mod.Dataset, spec: ImageSpec, *, workers: int = 8) -> np.ndarray:
        """uint8 (N, size, size, 3) for ``dataset``'s records, in order (what ``training.data.image_cache``
        returns from the image files)."""
        self.check_spec(spec)
        entries = []
        for record in dataset.records:
            if record.image_id not in self._by_id:
                raise CacheError(f"{record.image_id} is not in the cache {self.folder}")
            entries.append(self._by_id[record.image_id])
        for number in sorted({e["part"] for e in entries}):
            self._part(number)  # read and check each part once, before the threads decode from it

        def one(entry: dict) -> np.ndarray:
            blob = self._parts[entry["part"]][entry["offset"] : entry["offset"] + entry["length"]]
            return decode(blob)

        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            decoded = list(pool.map(one, entries))
        if not decoded:
            return np.zeros((0, spec.size, spec.size, 3), np.uint8)
        return np.stack(decoded)


def add_parser(sub) -> None:
    """The ``cache-images`` subcommand (wired into ``python -m training``)."""
    p = sub.add_parser(
        "cache-images",
        help="pack a split's images, resized for one member and re-encoded, into parts that travel to a "
        "training machine (python -m training fit --cache DIR reads them)",
        description=__doc__,
        formatter_class=__import__("argparse").RawDescriptionHelpFormatter,
    )
    p.add_argument("--data", action="append", required=True, help="labels CSV (repeat, or a .txt list file)")
    p.add_argument(
        "--split", help="split.json to cache (default: a lesion-grouped split made with --k/--fold/--seed)"
    )
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--fold", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--image-size", type=int, required=True, help="the member's input size (Lite0 224, Lite2 260)"
    )
    p.add_argument(
        "--resize", default="squash", help="resize mode of the shared preprocessing (default squash)"
    )
    p.add_argument("--colour", default="none", help="none or shades_of_gray (as the member's --colour)")
    p.add_argument(
        "--format", choices=FORMATS, default="jpeg", help="encoding (default jpeg; webp is ~45%% smaller)"
    )
    p.add_argument("--quality", type=int, default=90, help="encoder quality 1-100 (default 90)")
    p.add_argument(
        "--part-mib", type=float, default=56.0, help="largest part in MiB, below one call's 64 (default 56)"
    )
    p.add_argument("--workers", type=int, default=2, help="encoding threads (default 2)")
    p.add_argument("--strict", action="store_true", help="fail on any bad row instead of skipping it")
    p.add_argument("--out", required=True, help="new folder, e.g. .cache/images/lite0-224 (git-ignored)")


def run_command(args) -> int:
    result = build_cache(
        args.data if len(args.data) > 1 else args.data[0],
        args.out,
        image_size=args.image_size,
        split=args.split,
        k=args.k,
        fold=args.fold,
        seed=args.seed,
        resize=args.resize,
        colour=args.colour,
        encoding=Encoding(args.format, args.quality),
        part_mib=args.part_mib,
        strict=args.strict,
        workers=args.workers,
    )
    print(json.dumps(result))
    return 0
