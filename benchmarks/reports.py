"""Render + sign time per report (claim: <= 0.5 s per report on this CPU).

Builds the same ``ReportContent`` the report service builds (thumbnails from real dermoscopic images when
/work/shared/data/derm is there, generated images otherwise), renders it with xhtml2pdf and signs it with
pyHanko under a scratch CA; no database is needed. Verification (signature check) is timed as well.

    .venv/bin/python benchmarks/reports.py [--images 1,3,10] [--repeat 10] [--data /work/shared/data/derm]

Prints a table and, on the last line, JSON: seconds per report (median) for the 3-image case and per size.
"""

import argparse
import datetime as dt
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_S = 0.5


def _setup(scratch: Path) -> None:
    os.environ["TELEDER_VAR_DIR"] = str(scratch)
    os.environ["TELEDER_SIGNING_DIR"] = str(scratch / "signing")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "teleder.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def _image_sources(data: Path, count: int) -> list:
    images = sorted((data / "images").glob("*.jpg"))[:count] if (data / "images").is_dir() else []
    if len(images) == count:
        return images
    import numpy as np
    from PIL import Image

    generated = []
    for seed in range(count):
        pixels = np.random.default_rng(seed).integers(0, 255, size=(768, 1024, 3), dtype=np.uint8)
        out = io.BytesIO()
        Image.fromarray(pixels).save(out, format="JPEG", quality=95)
        generated.append(io.BytesIO(out.getvalue()))
    return generated


def _content(sources: list):
    from cases.reports import render

    rows = []
    for position, source in enumerate(sources, start=1):
        if isinstance(source, io.BytesIO):
            source.seek(0)
        thumb = render.thumbnail(source)
        rows.append(
            render.ImageRow(
                position,
                thumb.data_uri,
                0.1 + 0.08 * position,
                "medium",
                "effnet-ens 1.0.0",
                thumb.width,
                thumb.height,
            )
        )
    now = dt.datetime.now(dt.UTC)
    uid = "3f0e1c1e-1111-4222-8333-444455556666"
    return render.ReportContent(
        uid=uid,
        organization="North Clinic",
        case_id=42,
        patient_reference="P-00017",
        age=54,
        sex="Female",
        site="Upper extremity",
        lesion_label="left shoulder",
        priority="Urgent",
        clinical_notes="Changing pigmented lesion, noticed by partner.",
        submitted_at=now,
        analysed_at=now,
        reviewed_at=now,
        signed_at=now,
        case_risk=0.83,
        case_risk_band="high",
        model_version="effnet-ens 1.0.0",
        diagnosis="Melanoma",
        malignant=True,
        management="Biopsy / excision",
        follow_up_months=None,
        notes="Asymmetric, blue-white veil, atypical network.",
        agrees_with_ai=True,
        signer_name="Dr Alex Tester",
        verification_url=f"http://127.0.0.1:8000/reports/verify/?report={uid}",
        images=rows,
    )


def _timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default="1,3,10", help="images per report, comma-separated")
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--data", type=Path, default=Path("/work/shared/data/derm"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="teleder-bench-") as scratch:
        _setup(Path(scratch))
        from cases.reports import render, signing, verify

        signing.ca_init()
        subject = signing.SignerSubject(user_id=1, name="Dr Alex Tester", email="alex@example.org")
        # Cold start: first render (fonts, template) and first signing (CA key, certificate issuance).
        sources = _image_sources(args.data, 1)
        _, cold_render = _timed(lambda: render.render_report_pdf(_content(sources)))
        pdf = render.render_report_pdf(_content(sources))
        _, cold_sign = _timed(lambda: signing.sign_pdf(pdf, subject=subject, reason="Dermatology report"))

        rows = []
        for count in [int(n) for n in args.images.split(",")]:
            sources = _image_sources(args.data, count)
            thumbs, renders, signs, checks, sizes = [], [], [], [], []
            for _ in range(args.repeat):
                content, t_thumbs = _timed(lambda s=sources: _content(s))
                pdf, t_render = _timed(lambda c=content: render.render_report_pdf(c))
                signed, t_sign = _timed(lambda p=pdf: signing.sign_pdf(p, subject=subject, reason="Report"))
                check, t_check = _timed(lambda s=signed: verify.check_signature(s))
                assert check.status == verify.VALID, check
                thumbs.append(t_thumbs)
                renders.append(t_thumbs + t_render)
                signs.append(t_sign)
                checks.append(t_check)
                sizes.append(len(signed))
            totals = [r + s for r, s in zip(renders, signs, strict=True)]
            rows.append(
                {
                    "images": count,
                    "thumbnails_s": statistics.median(thumbs),
                    "render_s": statistics.median(renders),
                    "sign_s": statistics.median(signs),
                    "total_s": statistics.median(totals),
                    "total_max_s": max(totals),
                    "verify_s": statistics.median(checks),
                    "pdf_kb": round(statistics.median(sizes) / 1024),
                }
            )

    print(
        f"reports: render (incl. thumbnails) + sign, median of {args.repeat}; "
        f"cold first render {cold_render:.3f} s, cold first sign {cold_sign:.3f} s"
    )
    print(
        f"{'images':>6} {'thumbs s':>9} {'render s':>9} {'sign s':>8} {'total s':>8} {'max s':>7} "
        f"{'verify s':>9} {'PDF KB':>7}"
    )
    for row in rows:
        print(
            f"{row['images']:>6} {row['thumbnails_s']:>9.3f} {row['render_s']:>9.3f} {row['sign_s']:>8.3f} "
            f"{row['total_s']:>8.3f} {row['total_max_s']:>7.3f} {row['verify_s']:>9.3f} {row['pdf_kb']:>7}"
        )
    headline = next((r for r in rows if r["images"] == 3), rows[0])
    print(
        json.dumps(
            {
                "benchmark": "reports",
                "images": headline["images"],
                "render_s": round(headline["render_s"], 4),
                "sign_s": round(headline["sign_s"], 4),
                "total_s": round(headline["total_s"], 4),
                "target_s": TARGET_S,
                "meets_target": all(r["total_s"] <= TARGET_S for r in rows),
                "cold_render_s": round(cold_render, 4),
                "cold_sign_s": round(cold_sign, 4),
                "by_images": {
                    str(r["images"]): {k: round(v, 4) for k, v in r.items() if k != "images"} for r in rows
                },
            }
        )
    )


if __name__ == "__main__":
    main()
