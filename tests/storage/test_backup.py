"""scripts/backup.sh and scripts/restore.sh against the local PostgreSQL server and the file stores
(a local media folder and an S3 bucket on the local S3 server)."""

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}


def _pg_connect(dbname: str = "postgres"):
    import psycopg2

    connection = psycopg2.connect(dbname=dbname, connect_timeout=3, **PG)
    connection.autocommit = True
    return connection


@pytest.fixture
def scratch_database():
    """A new, empty PostgreSQL database, dropped afterwards; skipped where there is no local server."""
    if shutil.which("pg_dump") is None or shutil.which("pg_restore") is None:
        pytest.skip("pg_dump/pg_restore are not installed")
    try:
        admin = _pg_connect()
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"no PostgreSQL on 127.0.0.1:5432 ({exc.__class__.__name__}); see scripts/ci_services.sh")
    name = f"teleder_backup_{uuid.uuid4().hex[:10]}"
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    yield name, f"postgres://{PG['user']}@{PG['host']}:{PG['port']}/{name}"
    with admin.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


def _query(dbname: str, sql: str) -> list[tuple]:
    connection = _pg_connect(dbname)
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql)
            return cursor.fetchall() if cursor.description else []
    finally:
        connection.close()


def _run(script: str, *args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / script), *args], capture_output=True, text=True, timeout=120, env=env
    )


def _seed(dbname: str) -> None:
    _query(
        dbname,
        "CREATE TABLE clinic_case (id serial PRIMARY KEY, note text NOT NULL CHECK (note <> ''), risk real);"
        "INSERT INTO clinic_case (note, risk) SELECT 'case ' || g, g / 100.0 FROM generate_series(1, 50) g;",
    )


def _env(database_url: str, **extra: str) -> dict:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "TELEDER_MEDIA_ROOT", "DATABASE_URL"))
    }
    return {**env, "DATABASE_URL": database_url, **extra}


def _backup_dir(output: str) -> Path:
    return Path(output.strip().splitlines()[-1])


def test_database_and_local_files_survive_a_backup_and_restore(scratch_database, tmp_path):
    name, url = scratch_database
    _seed(name)
    media = tmp_path / "media"
    (media / "cases" / "1").mkdir(parents=True)
    (media / "reports" / "1").mkdir(parents=True)
    (media / "cases" / "1" / "a.jpg").write_bytes(b"\xff\xd8\xff image")
    (media / "reports" / "1" / "r.pdf").write_bytes(b"%PDF signed")
    env = _env(url, TELEDER_MEDIA_ROOT=str(media))

    made = _run("backup.sh", str(tmp_path / "backups"), env=env)
    assert made.returncode == 0, made.stderr
    backup = _backup_dir(made.stdout)
    assert (backup / "db.dump").stat().st_size > 0

    # Disaster: rows and files are lost.
    _query(name, "DELETE FROM clinic_case WHERE id > 10; UPDATE clinic_case SET note = 'tampered'")
    shutil.rmtree(media)

    refused = _run("restore.sh", str(backup), env=env)
    assert refused.returncode == 2 and "--yes" in refused.stderr

    restored = _run("restore.sh", "--yes", str(backup), env=env)
    assert restored.returncode == 0, restored.stderr
    assert _query(name, "SELECT count(*), min(note), max(risk) FROM clinic_case") == [(50, "case 1", 0.5)]
    assert _query(name, "INSERT INTO clinic_case (note) VALUES ('next') RETURNING id") == [(51,)]
    assert (media / "cases" / "1" / "a.jpg").read_bytes() == b"\xff\xd8\xff image"
    assert (media / "reports" / "1" / "r.pdf").read_bytes() == b"%PDF signed"


def test_restore_never_overwrites_a_stored_file_that_differs(scratch_database, tmp_path):
    name, url = scratch_database
    _seed(name)
    media = tmp_path / "media"
    (media / "reports" / "1").mkdir(parents=True)
    (media / "reports" / "1" / "r.pdf").write_bytes(b"%PDF original")
    env = _env(url, TELEDER_MEDIA_ROOT=str(media))
    backup = _backup_dir(_run("backup.sh", str(tmp_path / "b"), env=env).stdout)
    (media / "reports" / "1" / "r.pdf").write_bytes(b"%PDF changed later")

    result = _run("restore.sh", "--yes", str(backup), env=env)

    assert result.returncode == 1
    assert "NOT overwritten" in result.stderr and "reports/1/r.pdf" in result.stderr
    assert (media / "reports" / "1" / "r.pdf").read_bytes() == b"%PDF changed later"


def test_a_damaged_backup_is_refused_before_the_database_is_touched(scratch_database, tmp_path):
    name, url = scratch_database
    _seed(name)
    env = _env(url, TELEDER_MEDIA_ROOT=str(tmp_path / "media"))
    backup = _backup_dir(_run("backup.sh", str(tmp_path / "b"), env=env).stdout)
    dump = backup / "db.dump"
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0xFF
    dump.write_bytes(bytes(data))
    _query(name, "INSERT INTO clinic_case (note) VALUES ('after the backup')")

    result = _run("restore.sh", "--yes", str(backup), env=env)

    assert result.returncode != 0
    assert "FAILED" in result.stdout + result.stderr
    assert _query(name, "SELECT count(*) FROM clinic_case") == [(51,)]


def test_s3_objects_are_backed_up_and_restored_into_an_empty_bucket(scratch_database, tmp_path, s3_server):
    import boto3

    name, url = scratch_database
    _seed(name)
    credentials = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_S3_REGION_NAME": "us-east-1",
    }
    s3 = boto3.client(
        "s3",
        endpoint_url=s3_server,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )
    source, target = f"src-{uuid.uuid4().hex[:8]}", f"dst-{uuid.uuid4().hex[:8]}"
    for bucket in (source, target):
        s3.create_bucket(Bucket=bucket)
    objects = {
        "cases/1/a.jpg": b"\xff\xd8\xff one",
        "reports/1/r.pdf": b"%PDF two",
        "models/m/1/manifest.json": b"{}",
    }
    for key, body in objects.items():
        s3.put_object(Bucket=source, Key=key, Body=body)

    made = _run(
        "backup.sh",
        str(tmp_path / "b"),
        env=_env(url, AWS_STORAGE_BUCKET_NAME=source, AWS_S3_ENDPOINT_URL=s3_server, **credentials),
    )
    assert made.returncode == 0, made.stderr
    restored = _run(
        "restore.sh",
        "--yes",
        str(_backup_dir(made.stdout)),
        env=_env(url, AWS_STORAGE_BUCKET_NAME=target, AWS_S3_ENDPOINT_URL=s3_server, **credentials),
    )

    assert restored.returncode == 0, restored.stderr
    for key, body in objects.items():
        assert s3.get_object(Bucket=target, Key=key)["Body"].read() == body
