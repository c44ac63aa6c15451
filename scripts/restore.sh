#!/usr/bin/env bash
# Restore a backup made by scripts/backup.sh: checks every checksum first, then replaces the database's
# contents (pg_restore --clean) and copies files back into the store without overwriting any.
#
#   DATABASE_URL=postgres://... [S3 or TELEDER_MEDIA_ROOT as for backup.sh] scripts/restore.sh --yes BACKUP_DIR
#
# Stop web, workers and beat first (docker compose stop web worker worker-gpu beat) and start them after;
# the sweeper then re-enqueues cases that were in flight when the backup was taken.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
python="${PYTHON:-$here/../.venv/bin/python}"
[ -x "$python" ] || python=python3
confirm=no
if [ "${1:-}" = "--yes" ]; then confirm=yes; shift; fi
[ $# -eq 1 ] || { echo "usage: $0 --yes BACKUP_DIR" >&2; exit 2; }
source_dir="$1"
: "${DATABASE_URL:?set DATABASE_URL (postgres://...)}"
[ -f "$source_dir/db.dump" ] || { echo "$source_dir/db.dump is missing: not a TeleDerm backup" >&2; exit 2; }
if [ "$confirm" != yes ]; then
  echo "This replaces the contents of the database at ${DATABASE_URL%%:*}://...${DATABASE_URL##*@}." >&2
  echo "Run again with --yes to go ahead." >&2
  exit 2
fi

echo "Checking the backup"
(cd "$source_dir" && sha256sum --quiet -c db.dump.sha256)
(cd "$source_dir/storage" && sha256sum --quiet -c SHA256SUMS)
pg_restore --list "$source_dir/db.dump" > /dev/null

echo "Restoring the database"
pg_restore --clean --if-exists --no-owner --no-privileges --exit-on-error --single-transaction \
  --dbname "$DATABASE_URL" "$source_dir/db.dump"

echo "Restoring the file store"
"$python" "$here/storage_sync.py" restore "$source_dir/storage"
echo "Restore complete"
