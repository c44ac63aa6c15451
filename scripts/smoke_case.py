"""One case end to end through a running TeleDerm (the container smoke test, scripts/container_smoke.sh):
a clinician submits a case over the API, the worker's AI result arrives, a dermatologist reviews it from the
queue, the worker signs the report, and the downloaded PDF verifies (a tampered copy does not).

Usage: python scripts/smoke_case.py https://localhost:8443 [--cacert CA.pem] [--timeout 240]
Exits 0 when every step passed, 1 with the failing step otherwise.
"""

import argparse
import io
import sys
import time
import uuid

import numpy as np
import requests
from PIL import Image, ImageFilter

PASSWORD = "smoke-Password-1"  # noqa: S105 - the smoke test's throw-away users


def lesion_jpeg(seed: int, size: int = 480) -> bytes:
    """A dermoscopy-like picture: skin-coloured, a darker irregular blob in the middle, soft edges."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    angle = np.arctan2(yy, xx)
    radius = 0.22 + 0.03 * np.sin(3 * angle + seed) + 0.02 * np.cos(5 * angle)
    inside = np.sqrt(xx**2 + yy**2) < radius
    pixels = np.empty((size, size, 3), np.float32)
    pixels[:] = (214, 160, 140)
    pixels[inside] = (110, 70, 50)
    pixels += rng.normal(0, 8, pixels.shape)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(3))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=92)
    return out.getvalue()


class Step(Exception):
    pass


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise Step(message)


def burst(clin: requests.Session, base: str, lesion_id: int, count: int, wait_status) -> None:
    """Throughput of the running workers: ``count`` two-image cases submitted back to back, timed from the
    first submission to the last AI result (docs/deploy.md "Sizing")."""
    images = [lesion_jpeg(10 + i) for i in range(2)]
    started = time.monotonic()
    ids = []
    for n in range(count):
        r = clin.post(
            f"{base}/api/v1/cases/",
            data={"lesion": lesion_id, "priority": "routine"},
            files=[("images", (f"b{n}-{i}.jpg", data, "image/jpeg")) for i, data in enumerate(images)],
            headers={"Idempotency-Key": str(uuid.uuid4())},
            timeout=60,
        )
        expect(r.status_code == 201, f"burst submit {n}: HTTP {r.status_code} {r.text[:200]}")
        ids.append(r.json()["id"])
    submitted = time.monotonic() - started
    for case_id in ids:
        wait_status(clin, case_id, {"awaiting_review"})
    elapsed = time.monotonic() - started
    print(
        f"burst: {count} cases x 2 images submitted in {submitted:.1f} s, all analysed after {elapsed:.1f} s: "
        f"{count / elapsed * 3600:.0f} cases/hour, {2 * count / elapsed:.1f} images/s"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--cacert", default=True)
    parser.add_argument("--timeout", type=float, default=240.0)
    parser.add_argument(
        "--burst", type=int, default=0, help="then submit N two-image cases at once and time their AI results"
    )
    args = parser.parse_args()
    base = args.url.rstrip("/")

    def session(username: str) -> requests.Session:
        s = requests.Session()
        s.trust_env = False  # else REQUESTS_CA_BUNDLE from the environment overrides the proxy's CA below
        s.verify = args.cacert
        r = s.post(
            f"{base}/api/v1/auth/login/", json={"username": username, "password": PASSWORD}, timeout=30
        )
        expect(r.status_code == 200, f"login {username}: HTTP {r.status_code} {r.text[:200]}")
        s.headers["Authorization"] = f"Bearer {r.json()['access']}"
        return s

    def wait_status(s: requests.Session, case_id: int, wanted: set[str]) -> dict:
        deadline = time.monotonic() + args.timeout
        while True:
            status = s.get(f"{base}/api/v1/cases/{case_id}/status/", timeout=30).json()
            if status["status"] in wanted:
                return status
            expect(status["status"] != "failed", f"case {case_id} failed: {status}")
            expect(
                time.monotonic() < deadline, f"case {case_id} still {status['status']} after {args.timeout} s"
            )
            time.sleep(1)

    started = time.monotonic()
    try:
        clin = session("smoke-clin")
        patient = clin.post(
            f"{base}/api/v1/patients/", json={"reference": "SMOKE-1", "sex": "female", "year_of_birth": 1975}
        )
        expect(patient.status_code == 201, f"patient: HTTP {patient.status_code} {patient.text[:300]}")
        lesion = clin.post(f"{base}/api/v1/lesions/", json={"patient": patient.json()["id"], "site": "torso"})
        expect(lesion.status_code == 201, f"lesion: HTTP {lesion.status_code} {lesion.text[:300]}")
        files = [("images", (f"lesion-{i}.jpg", lesion_jpeg(i), "image/jpeg")) for i in (1, 2)]
        submitted = clin.post(
            f"{base}/api/v1/cases/",
            data={"lesion": lesion.json()["id"], "clinical_notes": "Smoke test", "priority": "routine"},
            files=files,
            headers={"Idempotency-Key": str(uuid.uuid4())},
            timeout=60,
        )
        expect(submitted.status_code == 201, f"submit: HTTP {submitted.status_code} {submitted.text[:300]}")
        case_id = submitted.json()["id"]
        print(f"submitted case {case_id}")

        status = wait_status(clin, case_id, {"awaiting_review"})
        case = clin.get(f"{base}/api/v1/cases/{case_id}/").json()
        predictions = [p for i in case["images"] for p in i["predictions"]]
        expect(len(predictions) == 2, f"expected 2 image predictions, got {case['images']}")
        for p in predictions:
            # The generated smoke images are not real dermoscopy: the AI safety gate may decline them, and
            # then it must say why instead of giving a number.
            if p["probability"] is None:
                gate = p.get("assessment") or {}
                expect(
                    gate.get("status") == "not_assessed" and gate.get("reasons"),
                    f"no probability and no gate reason: {p}",
                )
            else:
                expect(0.0 <= p["probability"] <= 1.0, f"probability out of range: {p['probability']}")
        outcome = status.get("ai_assessment") or "assessed"
        print(
            f"AI result after {time.monotonic() - started:.1f} s: {outcome}, risk band {status['risk_band']!r}"
        )

        derm = session("smoke-derm")
        queue = [c["id"] for c in derm.get(f"{base}/api/v1/queue/").json()["results"]]
        expect(case_id in queue, f"case {case_id} not in the review queue {queue}")
        review = derm.post(
            f"{base}/api/v1/cases/{case_id}/reviews/",
            json={"diagnosis": "mel", "malignant": True, "management": "biopsy", "notes": "Excise."},
        )
        expect(review.status_code == 201, f"review: HTTP {review.status_code} {review.text[:300]}")

        wait_status(clin, case_id, {"reported"})
        reports = clin.get(f"{base}/api/v1/cases/{case_id}/").json()["reports"]
        expect(len(reports) == 1, f"expected one report, got {reports}")
        download = reports[0]["download_url"]
        pdf = clin.get(download if download.startswith("http") else base + download, timeout=60)
        expect(
            pdf.status_code == 200 and pdf.content.startswith(b"%PDF-"), f"download: HTTP {pdf.status_code}"
        )
        print(f"signed report {reports[0]['uid']} after {time.monotonic() - started:.1f} s")

        verified = clin.post(
            f"{base}/api/v1/reports/verify/", files={"file": ("r.pdf", pdf.content, "application/pdf")}
        )
        expect(verified.status_code == 200, f"verify: HTTP {verified.status_code} {verified.text[:300]}")
        expect(
            verified.json()["valid"] is True and verified.json()["report_uid"] == reports[0]["uid"],
            f"verify: {verified.json()}",
        )
        tampered = pdf.content[:-200] + b"0" * 200
        refused = clin.post(
            f"{base}/api/v1/reports/verify/", files={"file": ("t.pdf", tampered, "application/pdf")}
        )
        expect(
            refused.status_code in (200, 400) and refused.json().get("valid") is not True,
            "tampered PDF valid",
        )
        print(f"report verified, a tampered copy refused; {time.monotonic() - started:.1f} s in all")
        if args.burst:
            burst(clin, base, lesion.json()["id"], args.burst, wait_status)
    except (Step, requests.RequestException, KeyError, ValueError) as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
