"""The learning loop at scale: export and agreement dashboard with N reviewed cases (claims: export of 10,000
reviewed cases <= 60 s; dashboard query p95 <= 200 ms at 10,000 with a number of SQL queries that does not grow).

Builds a scratch SQLite database and media folder with N reviewed one-image cases (bulk inserts, small
generated JPEGs), then times ``training_set_export`` once and ``agreement_table`` ``--repeat`` times, and counts
the dashboard's SQL queries at N/10 and at N cases.

    .venv/bin/python benchmarks/learning.py [--cases 10000] [--repeat 20]

Prints a table and, on the last line, JSON.
"""

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXPORT_TARGET_S = 60.0
DASHBOARD_TARGET_MS = 200.0


def _setup(scratch: Path) -> None:
    os.environ["TELEDER_VAR_DIR"] = str(scratch)
    os.environ["TELEDER_MEDIA_ROOT"] = str(scratch / "media")
    os.environ["DATABASE_URL"] = f"sqlite:///{scratch / 'bench.sqlite3'}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "teleder.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _jpeg(seed: int) -> bytes:
    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 255, size=(150, 200, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=90)
    return out.getvalue()


def _populate(n: int, media: Path, start: int = 0) -> None:
    import datetime as dt
    import hashlib

    from django.utils import timezone

    from cases.models import (
        Case,
        CaseStatus,
        Lesion,
        LesionImage,
        Organization,
        Patient,
        Prediction,
        Review,
        User,
    )
    from inference.models import ModelVersion

    org, _ = Organization.objects.get_or_create(slug="bench", defaults={"name": "Bench Clinic"})
    clinician, _ = User.objects.get_or_create(username="bench-clin", defaults={"role": "clinician"})
    derm, _ = User.objects.get_or_create(username="bench-derm", defaults={"role": "dermatologist"})
    derm.organizations.add(org)
    version, _ = ModelVersion.objects.get_or_create(
        name="bench",
        version="1.0.0",
        defaults={"sha256": "0" * 64, "package_path": "/nonexistent", "threshold": 0.3, "status": "active"},
    )
    patients = Patient.objects.bulk_create(
        Patient(organization=org, reference=f"B-{i:06d}", created_by=clinician, year_of_birth=1960 + i % 50)
        for i in range(start, start + n)
    )
    lesions = Lesion.objects.bulk_create(Lesion(patient=p, site="torso") for p in patients)
    now = timezone.now()
    cases = Case.objects.bulk_create(
        Case(
            organization=org,
            lesion=lesion,
            submitted_by=clinician,
            status=CaseStatus.REPORTED,
            age_at_submission=40 + i % 40,
            sex_at_submission="female" if i % 2 else "male",
            site_at_submission="torso",
            risk=((i * 37) % 100) / 100,
            risk_band="medium",
            model_version=version,
            analysed_at=now,
        )
        for i, lesion in enumerate(lesions, start=start)
    )
    (media / "bench").mkdir(parents=True, exist_ok=True)
    images = []
    for i, case in enumerate(cases, start=start):
        data = _jpeg(i % 50)
        name = f"bench/{i}.jpg"
        (media / name).write_bytes(data)
        images.append(
            LesionImage(
                case=case,
                file=name,
                sha256=hashlib.sha256(data).hexdigest(),
                width=200,
                height=150,
                content_type="image/jpeg",
                size_bytes=len(data),
            )
        )
    images = LesionImage.objects.bulk_create(images)
    Prediction.objects.bulk_create(
        Prediction(
            image=image, model_version=version, probability=case.risk, risk_band="medium", latency_ms=10.0
        )
        for image, case in zip(images, cases, strict=True)
    )
    Review.objects.bulk_create(
        Review(
            case=case,
            reviewer=derm,
            diagnosis="mel" if (i * 37) % 100 > 60 else "nv",
            malignant=(i * 37) % 100 > 60,
            management="biopsy" if (i * 37) % 100 > 60 else "reassure",
            agrees_with_ai=True,
            created_at=now - dt.timedelta(minutes=i % 1000),
        )
        for i, case in enumerate(cases, start=start)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="teleder-bench-learning-"))
    _setup(scratch)
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from cases.models import Organization, User
    from learning.selectors import agreement_table, default_filters
    from learning.services import training_set_export, training_sharing_set

    media = scratch / "media"
    small = max(1, args.cases // 10)
    _populate(small, media)
    derm = User.objects.get(username="bench-derm")
    with CaptureQueriesContext(connection) as few:
        agreement_table(user=derm, filters=default_filters())
    t0 = time.perf_counter()
    _populate(args.cases - small, media, start=small)
    populate_s = time.perf_counter() - t0
    with CaptureQueriesContext(connection) as many:
        rows = agreement_table(user=derm, filters=default_filters())
    assert rows[0].cases == args.cases, rows[0].cases
    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        agreement_table(user=derm, filters=default_filters())
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    p95 = times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))]
    training_sharing_set(actor=None, organization=Organization.objects.get(slug="bench"), enabled=True)
    t0 = time.perf_counter()
    result = training_set_export(out_dir=scratch / "export")
    export_s = time.perf_counter() - t0
    assert result.cases == args.cases
    print(f"reviewed cases: {args.cases} (bulk set-up {populate_s:.1f} s)")
    print(f"{'measure':<40} {'value':>10} {'target':>10}")
    print(f"{'export, seconds':<40} {export_s:>10.1f} {EXPORT_TARGET_S:>10.0f}")
    print(f"{'dashboard query, median ms':<40} {statistics.median(times):>10.1f} {'':>10}")
    print(f"{'dashboard query, p95 ms':<40} {p95:>10.1f} {DASHBOARD_TARGET_MS:>10.0f}")
    print(
        f"{'SQL queries at ' + str(small) + ' / ' + str(args.cases) + ' cases':<40} {len(few):>5} /{len(many):>3}"
    )
    print(
        json.dumps(
            {
                "cases": args.cases,
                "export_s": round(export_s, 2),
                "export_ok": export_s <= EXPORT_TARGET_S,
                "dashboard_p95_ms": round(p95, 1),
                "dashboard_median_ms": round(statistics.median(times), 1),
                "dashboard_ok": p95 <= DASHBOARD_TARGET_MS,
                "queries_small": len(few),
                "queries_large": len(many),
            }
        )
    )


if __name__ == "__main__":
    main()
