"""FHIR Bundle generation per case (target: <= 100 ms), plus the DICOM ZIP export, on this CPU.

A scratch SQLite database is migrated; one reported case per size (1, 3 and 10 images: real dermoscopic images
from /work/shared/data/derm when it is there, generated 1024x768 JPEGs otherwise) is made through the real
services: submit, analysis results with a 7-class differential per image, a review and a signed PDF report.
Timed per case, median of --repeat runs:

- ``bundle``: load the case (``interop.selectors.case_record``: queries + reading and checking the PDF), map it
  (``interop.fhir.case_bundle``) and serialise it to JSON: the work of ``GET /api/v1/cases/{id}/fhir`` without
  HTTP (this is the <= 100 ms target);
- ``validate``: parsing that Bundle with the fhir.resources R4 models (what ``TELEDER_FHIR_VALIDATE=1`` adds to
  each request; the tests validate every resource the mapper makes);
- ``endpoint``: the whole request through Django and DRF in process (authentication, audit record, rendering);
- ``baseline``: the existing case detail endpoint (``GET /api/v1/cases/{id}/``) in the same run, for a ratio;
- ``dicom_zip``: the case's images as a ZIP of DICOM files (``interop.services.dicom_export``).

    .venv/bin/python benchmarks/interop.py [--images 1,3,10] [--repeat 20] [--data /work/shared/data/derm]

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
TARGET_MS = 100.0
CLASSES = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")


def _setup(scratch: Path) -> None:
    os.environ["TELEDER_VAR_DIR"] = str(scratch)
    os.environ["TELEDER_MEDIA_ROOT"] = str(scratch / "media")
    os.environ["DATABASE_URL"] = f"sqlite:///{scratch / 'bench.sqlite3'}"
    os.environ["TELEDER_SIGNING_DIR"] = str(scratch / "signing")
    os.environ["TELEDER_AXES_ENABLED"] = "0"
    os.environ["TELEDER_API_RATE_USER"] = "1000000/min"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "teleder.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _images(data: Path, count: int) -> list:
    from django.core.files.uploadedfile import SimpleUploadedFile

    paths = sorted((data / "images").glob("*.jpg"))[:count] if (data / "images").is_dir() else []
    if len(paths) == count:
        return [SimpleUploadedFile(p.name, p.read_bytes(), "image/jpeg") for p in paths]
    import numpy as np
    from PIL import Image

    out = []
    for seed in range(count):
        pixels = np.random.default_rng(seed).integers(0, 255, size=(768, 1024, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=95)
        out.append(SimpleUploadedFile(f"gen{seed}.jpg", buffer.getvalue(), "image/jpeg"))
    return out


def _world():
    from cases import services
    from cases.reports import signing
    from cases.vocabulary import Role
    from inference.models import ModelStatus, ModelVersion

    signing.ca_init()
    import secrets

    org = services.organization_create(name="Bench Clinic", slug="bench")
    password = secrets.token_urlsafe(16)
    clinician = services.user_create(
        username="bench-clin", password=password, role=Role.CLINICIAN, organizations=[org]
    )
    derm = services.user_create(
        username="bench-derm", password=password, role=Role.DERMATOLOGIST, organizations=[org]
    )
    model = ModelVersion.objects.create(
        name="bench",
        version="1",
        status=ModelStatus.ACTIVE,
        sha256="0" * 64,
        package_path="/nonexistent",
        manifest={"risk_bands": {"medium": 0.3, "high": 0.7}},
        threshold=0.3,
    )
    return org, clinician, derm, model


def _reported_case(org, clinician, derm, model, images: list):
    from cases import services
    from cases.models import Prediction
    from cases.reports.services import report_generate

    patient = services.patient_create(
        actor=clinician, organization=org, reference=f"B-{len(images)}", sex="female", year_of_birth=1960
    )
    lesion = services.lesion_create(actor=clinician, patient=patient, site="torso", label="left scapula")
    case = services.case_submit(
        actor=clinician, lesion=lesion, images=images, clinical_notes="Growing.", analyse=False
    ).case
    services.case_claim_for_analysis(case_id=case.pk)
    results = [
        services.ImageResult(image_id=i.pk, probability=0.8, member_probabilities={"m0": 0.8}, latency_ms=5.0)
        for i in case.images.all()
    ]
    services.case_record_analysis(case_id=case.pk, model_version=model, results=results)
    differential = {c: round(1.0 / len(CLASSES), 4) for c in CLASSES}
    Prediction.objects.filter(image__case=case).update(class_probabilities=differential)
    case.refresh_from_db()
    review = services.review_submit(
        actor=derm, case=case, diagnosis="mel", malignant=True, management="biopsy", notes="Excise."
    )
    report_generate(review_id=review.pk)
    case.refresh_from_db()
    return case


def _median_ms(fn, repeat: int) -> float:
    fn()  # warm up (imports, caches)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default="1,3,10", help="Images per case, comma-separated.")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--data", default="/work/shared/data/derm")
    args = parser.parse_args()
    sizes = [int(n) for n in args.images.split(",")]

    with tempfile.TemporaryDirectory(prefix="teleder-bench-interop-") as scratch:
        _setup(Path(scratch))
        from django.conf import settings
        from rest_framework.test import APIClient

        from interop import fhir, selectors, services

        org, clinician, derm, model = _world()
        client = APIClient()
        client.force_authenticate(clinician)
        rows = []
        for n in sizes:
            case = _reported_case(org, clinician, derm, model, _images(Path(args.data), n))

            def bundle(case=case) -> int:
                record = selectors.case_record(case, base_url=settings.SITE_URL)
                return len(json.dumps(fhir.case_bundle(record)))

            mapped = fhir.case_bundle(selectors.case_record(case, base_url=settings.SITE_URL))

            def validate(mapped=mapped) -> None:
                fhir.validate(mapped)

            def endpoint(case=case) -> None:
                assert client.get(f"/api/v1/cases/{case.pk}/fhir").status_code == 200

            def baseline(case=case) -> None:
                assert client.get(f"/api/v1/cases/{case.pk}/").status_code == 200

            size = bundle()
            entries = len(fhir.case_bundle(selectors.case_record(case))["entry"])
            row = {
                "images": n,
                "entries": entries,
                "bundle_kb": round(size / 1024, 1),
                "bundle_ms": round(_median_ms(bundle, args.repeat), 1),
                "validate_ms": round(_median_ms(validate, args.repeat), 1),
                "endpoint_ms": round(_median_ms(endpoint, args.repeat), 1),
                "baseline_case_detail_ms": round(_median_ms(baseline, args.repeat), 1),
                "dicom_zip_ms": round(
                    _median_ms(
                        lambda case=case: services.dicom_export(actor=clinician, case=case, via="bench"), 5
                    ),
                    1,
                ),
            }
            row["endpoint_vs_case_detail"] = round(row["endpoint_ms"] / row["baseline_case_detail_ms"], 2)
            rows.append(row)

    print(
        f"{'images':>6} {'entries':>7} {'KB':>7} {'bundle ms':>9} {'validate ms':>11} {'endpoint ms':>11} "
        f"{'detail ms':>9} {'ratio':>5} {'dicom ms':>8}"
    )
    for r in rows:
        print(
            f"{r['images']:>6} {r['entries']:>7} {r['bundle_kb']:>7} {r['bundle_ms']:>9} {r['validate_ms']:>11} "
            f"{r['endpoint_ms']:>11} {r['baseline_case_detail_ms']:>9} {r['endpoint_vs_case_detail']:>5} "
            f"{r['dicom_zip_ms']:>8}"
        )
    worst = max(r["bundle_ms"] for r in rows)
    print(
        f"target: bundle <= {TARGET_MS:.0f} ms per case: {'met' if worst <= TARGET_MS else 'NOT met'} "
        f"(worst {worst} ms)"
    )
    print(json.dumps({"target_ms": TARGET_MS, "met": worst <= TARGET_MS, "rows": rows}))


if __name__ == "__main__":
    main()
