"""Copy the file store (S3 bucket or local media folder) to a backup folder and back, with checksums.

    python scripts/storage_sync.py backup  DEST_DIR     # store -> DEST_DIR (files + SHA256SUMS)
    python scripts/storage_sync.py restore SOURCE_DIR   # SOURCE_DIR -> store

The store is S3 when AWS_STORAGE_BUCKET_NAME is set (AWS_S3_ENDPOINT_URL, AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY as for the application), else the folder TELEDER_MEDIA_ROOT. A restore never
overwrites: an object that already exists with the same content is skipped, one with different content is
reported and the restore exits with status 1 (signed reports must stay as they were).
"""

import argparse
import hashlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

SUMS = "SHA256SUMS"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class LocalStore:
    def __init__(self, root: Path):
        self.root = root

    def names(self) -> Iterator[str]:
        if self.root.exists():
            for path in sorted(self.root.rglob("*")):
                if path.is_file():
                    yield path.relative_to(self.root).as_posix()

    def read(self, name: str) -> bytes | None:
        path = self.root / name
        return path.read_bytes() if path.is_file() else None

    def write(self, name: str, data: bytes) -> None:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


class S3Store:
    def __init__(self, bucket: str):
        import boto3

        self.bucket = bucket
        self.client = boto3.client(
            "s3",
            endpoint_url=os.environ.get("AWS_S3_ENDPOINT_URL") or None,
            region_name=os.environ.get("AWS_S3_REGION_NAME") or None,
        )

    def names(self) -> Iterator[str]:
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
            for item in page.get("Contents", []):
                yield item["Key"]

    def read(self, name: str) -> bytes | None:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=name)["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None

    def write(self, name: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=name, Body=data)


def store_from_environment() -> LocalStore | S3Store:
    bucket = os.environ.get("AWS_STORAGE_BUCKET_NAME")
    if bucket:
        return S3Store(bucket)
    media = os.environ.get("TELEDER_MEDIA_ROOT")
    if not media:
        sys.exit("Set AWS_STORAGE_BUCKET_NAME (S3) or TELEDER_MEDIA_ROOT (local files).")
    return LocalStore(Path(media))


def backup(store, destination: Path) -> int:
    destination.mkdir(parents=True, exist_ok=True)
    target = LocalStore(destination / "files")
    lines = []
    for name in store.names():
        data = store.read(name)
        if data is None:  # deleted while we listed
            continue
        target.write(name, data)
        lines.append(f"{_sha256(data)}  files/{name}\n")
    (destination / SUMS).write_text("".join(lines))
    print(f"backed up {len(lines)} files")
    return 0


def restore(store, source: Path) -> int:
    sums = source / SUMS
    if not sums.exists():
        sys.exit(f"{sums} is missing: not a storage backup folder.")
    restored = skipped = 0
    conflicts = []
    for line in sums.read_text().splitlines():
        digest, relative = line.split("  ", 1)
        data = (source / relative).read_bytes()
        if _sha256(data) != digest:
            sys.exit(f"{relative} does not match its checksum: the backup is damaged; nothing more restored.")
        name = relative.removeprefix("files/")
        existing = store.read(name)
        if existing is None:
            store.write(name, data)
            restored += 1
        elif _sha256(existing) == digest:
            skipped += 1
        else:
            conflicts.append(name)
    print(f"restored {restored} files, {skipped} already present")
    for name in conflicts:
        print(f"NOT overwritten (differs from the backup): {name}", file=sys.stderr)
    return 1 if conflicts else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["backup", "restore"])
    parser.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    store = store_from_environment()
    return backup(store, args.folder) if args.mode == "backup" else restore(store, args.folder)


if __name__ == "__main__":
    sys.exit(main())
