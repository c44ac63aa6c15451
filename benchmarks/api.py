"""API throughput with 10,000 cases: requests/s, p50/p95 latency and SQL queries per request for the
dermatologist's queue, the case list and the case detail endpoints.

A scratch SQLite database (in a temporary folder) is migrated and filled with bulk inserts: two
organizations, 10,000 cases awaiting review with 2 images each and one prediction per image. Requests go
through the whole Django stack in process (middleware, JWT authentication, throttling, serializers, the audit
record of each detail view) with one client, so the numbers are per core and exclude the HTTP server.

    .venv/bin/python benchmarks/api.py [--cases 10000] [--requests 300]

Prints a table and, on the last line, JSON.
"""

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _setup(scratch: Path) -> None:
    os.environ["TELEDER_VAR_DIR"] = str(scratch)
    os.environ["DATABASE_URL"] = f"sqlite:///{scratch / 'bench.sqlite3'}"
    os.environ["TELEDER_AXES_ENABLED"] = "0"
    os.environ["TELEDER_API_RATE_USER"] = "1000000/min"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "teleder.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _populate(n_cases: int) -> dict:
    from django.utils import timezone

    from cases.models import Case, CaseStatus, Lesion, LesionImage, Organization, Patient, Prediction, User
    from cases.vocabulary import Role
    from inference.models import ModelStatus, ModelVersion

    rng = random.Random(7)
    orgs = [Organization.objects.create(name=f"Clinic {i}", slug=f"clinic-{i}") for i in range(2)]
    clinician = User.objects.create(username="bench-clin", role=Role.CLINICIAN)
    clinician.organizations.set(orgs[:1])
    derm = User.objects.create(username="bench-derm", role=Role.DERMATOLOGIST)
    derm.organizations.set(orgs)
    model = ModelVersion.objects.create(
        name="bench",
        version="1",
        status=ModelStatus.ACTIVE,
        sha256="0" * 64,
        package_path="/nonexistent",
        manifest={"members": [{"name": "m0"}, {"name": "m1"}], "risk_bands": {"medium": 0.3, "high": 0.7}},
        threshold=0.3,
    )
    patients = Patient.objects.bulk_create(
        Patient(organization=orgs[i % 2], reference=f"B-{i:06d}", created_by=clinician)
        for i in range(n_cases // 4)
    )
    lesions = Lesion.objects.bulk_create(Lesion(patient=p, site="torso") for p in patients for _ in range(2))
    now = timezone.now()
    cases = []
    for i in range(n_cases):
        lesion = lesions[i % len(lesions)]
        risk = rng.random()
        band = "high" if risk >= 0.7 else "medium" if risk >= 0.3 else "low"
        cases.append(
            Case(
                organization_id=lesion.patient.organization_id,
                lesion=lesion,
                submitted_by=clinician,
                status=CaseStatus.AWAITING_REVIEW,
                risk=risk,
                risk_band=band,
                model_version=model,
                analysed_at=now,
            )
        )
    cases = Case.objects.bulk_create(cases, batch_size=2000)
    images = LesionImage.objects.bulk_create(
        (
            LesionImage(
                case=case,
                position=p,
                file=f"cases/{case.pk}/{p}.jpg",
                sha256=f"{case.pk:032x}{p:032x}",
                width=640,
                height=480,
                content_type="image/jpeg",
                size_bytes=100_000,
            )
            for case in cases
            for p in range(2)
        ),
        batch_size=2000,
    )
    Prediction.objects.bulk_create(
        (
            Prediction(
                image=image,
                model_version=model,
                probability=0.5,
                risk_band="medium",
                member_probabilities={"m0": 0.45, "m1": 0.55},
                latency_ms=7.0,
            )
            for image in images
        ),
        batch_size=2000,
    )
    return {
        "clinician": clinician,
        "dermatologist": derm,
        "case_ids": [c.pk for c in cases if c.organization_id == orgs[0].pk],
    }


def _measure(client, urls: list[str]) -> dict:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for url in urls[:5]:  # warm-up
        client.get(url)
    latencies, queries = [], set()
    started = time.perf_counter()
    for url in urls:
        with CaptureQueriesContext(connection) as captured:
            t0 = time.perf_counter()
            response = client.get(url)
            latencies.append(time.perf_counter() - t0)
        if response.status_code != 200:
            raise SystemExit(f"{url}: {response.status_code} {response.content[:300]!r}")
        queries.add(len(captured.captured_queries))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "requests": len(urls),
        "rps": round(len(urls) / elapsed, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p95_ms": round(latencies[int(0.95 * (len(latencies) - 1))] * 1000, 2),
        "queries_per_request": sorted(queries),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=300, help="requests per endpoint")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="teleder-bench-api-") as scratch:
        _setup(Path(scratch))
        from django.test import Client

        from cases.api.authentication import issue_tokens

        t0 = time.perf_counter()
        world = _populate(args.cases)
        populate_s = time.perf_counter() - t0
        clients = {}
        for role in ("clinician", "dermatologist"):
            clients[role] = Client(HTTP_AUTHORIZATION=f"Bearer {issue_tokens(world[role]).access}")
        rng = random.Random(1)
        n = args.requests
        pages = max(1, args.cases // 25 // 2)
        scenarios = {
            "queue (page 1)": ("dermatologist", ["/api/v1/queue/"] * n),
            "queue (random page)": (
                "dermatologist",
                [f"/api/v1/queue/?page={rng.randint(1, pages)}" for _ in range(n)],
            ),
            "queue (band=high, 100/page)": (
                "dermatologist",
                ["/api/v1/queue/?risk_band=high&page_size=100"] * n,
            ),
            "case list (clinician)": ("clinician", ["/api/v1/cases/?ordering=-risk"] * n),
            "case detail": (
                "clinician",
                [f"/api/v1/cases/{rng.choice(world['case_ids'])}/" for _ in range(n)],
            ),
        }
        results = {name: _measure(clients[role], urls) for name, (role, urls) in scenarios.items()}
    print(
        f"{args.cases} cases (filled in {populate_s:.1f} s), {n} requests per endpoint, one in-process client"
    )
    print(f"{'endpoint':<30} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'queries':>8}")
    for name, r in results.items():
        queries = ",".join(map(str, r["queries_per_request"]))
        print(f"{name:<30} {r['rps']:>8} {r['p50_ms']:>8} {r['p95_ms']:>8} {queries:>8}")
    print(json.dumps({"benchmark": "api", "cases": args.cases, "results": results}))


if __name__ == "__main__":
    main()
