#!/usr/bin/env bash
# Back up TeleDerm: the PostgreSQL database (pg_dump, custom format) and the file store (images, reports,
# model packages; S3 or local), into one folder with checksums.
#
#   DATABASE_URL=postgres://user:pass@host:5432/teleder \
#   AWS_STORAGE_BUCKET_NAME=teleder AWS_S3_ENDPOINT_URL=... AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... \
#   scripts/backup.sh /backups            # -> /backups/teleder-YYYYmmddTHHMMSSZ/
#
# Local files instead of S3: set TELEDER_MEDIA_ROOT instead of AWS_STORAGE_BUCKET_NAME. With compose, run it
# on the host with the published ports, or see docs/deploy.md for `docker compose exec`.
# The database is dumped first: files referenced by rows in the dump then exist in the store (files are
# written before their rows commit and are never deleted).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
python="${PYTHON:-$here/../.venv/bin/python}"
[ -x "$python" ] || python=python3
[ $# -eq 1 ] || { echo "usage: $0 BACKUP_ROOT" >&2; exit 2; }
: "${DATABASE_URL:?set DATABASE_URL (postgres://...)}"
case "$DATABASE_URL" in postgres://*|postgresql://*) ;; *) echo "DATABASE_URL must be PostgreSQL" >&2; exit 2;; esac

target="$1/teleder-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$target"
umask 077

echo "Dumping the database"
pg_dump --format=custom --no-owner --no-privileges --file "$target/db.dump" "$DATABASE_URL"
(cd "$target" && sha256sum db.dump > db.dump.sha256)

echo "Copying the file store"
"$python" "$here/storage_sync.py" backup "$target/storage"

{
  echo "created=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "pg_dump=$(pg_dump --version)"
  echo "git=$(git -C "$here/.." rev-parse --short HEAD 2>/dev/null || echo unknown)"
} > "$target/INFO"
echo "$target"
