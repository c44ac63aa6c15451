#!/usr/bin/env python3
"""A minimal TeleDerm mobile client: log in, submit a case with images, poll until the AI result arrives,
(optionally) review it as a dermatologist, wait for the signed report, download it and verify it.

Needs only ``requests``. Against the demo (``./bin/demo``, which prints its users at start-up):

    python examples/mobile_client.py --url http://127.0.0.1:8000 \\
        --username clinician --password demo-clinician-2026 \\
        --review-as dermatologist:demo-dermatologist-2026 lesion1.jpg lesion2.jpg

Without image paths a small synthetic PNG is sent. Exit status 0 when the report was downloaded and verified.
"""

import argparse
import struct
import sys
import time
import uuid
import zlib
from pathlib import Path

import requests


class ApiError(RuntimeError):
    pass


class Client:
    """Bearer-token session that refreshes its access token once when the server says it expired."""

    def __init__(self, base_url: str, timeout_s: float = 30.0) -> None:
        self.base = base_url.rstrip("/") + "/api/v1"
        self.http = requests.Session()
        self.timeout_s = timeout_s
        self.refresh_token = ""

    def login(self, username: str, password: str) -> dict:
        body = self._call(
            "POST", "/auth/login/", json={"username": username, "password": password}, auth=False
        )
        self._use(body)
        return body["user"]

    def logout(self) -> None:
        self._call("POST", "/auth/logout/", json={"refresh": self.refresh_token})
        self.http.headers.pop("Authorization", None)

    def _use(self, tokens: dict) -> None:
        self.refresh_token = tokens["refresh"]
        self.http.headers["Authorization"] = f"Bearer {tokens['access']}"

    def _call(self, method: str, path: str, *, auth: bool = True, raw: bool = False, **kwargs):
        url = path if path.startswith("http") else self.base + path
        response = self.http.request(method, url, timeout=self.timeout_s, **kwargs)
        if response.status_code == 401 and auth and self.refresh_token:
            tokens = self.http.post(
                f"{self.base}/auth/refresh/", json={"refresh": self.refresh_token}, timeout=self.timeout_s
            )
            if tokens.ok:
                self._use(tokens.json())
                response = self.http.request(method, url, timeout=self.timeout_s, **kwargs)
        if response.status_code >= 400:
            try:
                error = response.json()["error"]
                detail = f"{error['code']}: {error['message']} {error['fields'] or ''}".strip()
            except (ValueError, KeyError, TypeError):
                detail = response.text[:300]
            raise ApiError(f"{method} {path} -> {response.status_code} {detail}")
        return response if raw else response.json()

    def get(self, path: str, **kwargs):
        return self._call("GET", path, **kwargs)

    def post(self, path: str, **kwargs):
        return self._call("POST", path, **kwargs)


def synthetic_png(size: int = 96) -> bytes:
    """A skin-coloured square with a dark round 'lesion', as a PNG written with the standard library."""
    rows = []
    for y in range(size):
        row = bytearray([0])
        for x in range(size):
            inside = (x - size / 2) ** 2 + (y - size / 2) ** 2 < (size / 4) ** 2
            row += bytes((90, 55, 40) if inside else (224, 180, 150))
        rows.append(bytes(row))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"".join(rows)))
        + chunk(b"IEND", b"")
    )


def submit_case(client: Client, lesion_id: int, images: list[tuple[str, bytes, str]], notes: str) -> dict:
    """POST the case; on a network error retry with the same Idempotency-Key, so only one case is made."""
    key = str(uuid.uuid4())
    for attempt in range(4):
        try:
            return client.post(
                "/cases/",
                data={"lesion": lesion_id, "clinical_notes": notes, "priority": "routine"},
                files=[("images", image) for image in images],
                headers={"Idempotency-Key": key},
            )
        except requests.ConnectionError:
            if attempt == 3:
                raise
            time.sleep(2**attempt)
    raise AssertionError("unreachable")


def wait_for(client: Client, case_id: int, statuses: set[str], timeout_s: float, interval_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    last = None
    while True:
        status = client.get(f"/cases/{case_id}/status/")
        if status["status"] != last:
            print(f"  case {case_id}: {status['status']}")
            last = status["status"]
        if status["status"] in statuses:
            return status
        if status["status"] == "failed":
            raise ApiError(f"the analysis failed: {status['failure_reason']}")
        if time.monotonic() > deadline:
            raise ApiError(f"case {case_id} is still {status['status']} after {timeout_s:.0f} s")
        time.sleep(interval_s)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "images", nargs="*", type=Path, help="JPEG or PNG files (1-10); default: a synthetic PNG"
    )
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="server (default: the demo)")
    parser.add_argument("--username", default="clinician")
    parser.add_argument("--password", default="demo-clinician-2026")
    parser.add_argument("--patient", default="", help="patient reference (default: a new MOBILE-xxxx)")
    parser.add_argument("--site", default="torso", help="anatomical site of the lesion (ISIC vocabulary)")
    parser.add_argument(
        "--review-as",
        default="",
        metavar="USER:PASSWORD",
        help="also review the case as this dermatologist (demo only); otherwise wait for a review made elsewhere",
    )
    parser.add_argument("--out", type=Path, default=Path("."), help="folder for the downloaded report")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for each step")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between polls")
    args = parser.parse_args(argv)

    images = [
        (p.name, p.read_bytes(), "image/png" if p.suffix.lower() == ".png" else "image/jpeg")
        for p in args.images
    ]
    if not images:
        images = [("synthetic.png", synthetic_png(), "image/png")]

    try:
        clinic = Client(args.url)
        me = clinic.login(args.username, args.password)
        print(
            f"logged in as {me['display_name']} ({me['role']}) of {', '.join(o['name'] for o in me['organizations'])}"
        )
        reference = args.patient or f"MOBILE-{uuid.uuid4().hex[:6].upper()}"
        found = clinic.get("/patients/", params={"search": reference})["results"]
        patient = next((p for p in found if p["reference"].lower() == reference.lower()), None)
        patient = patient or clinic.post("/patients/", json={"reference": reference, "sex": "unknown"})
        lesion = clinic.post(
            "/lesions/", json={"patient": patient["id"], "site": args.site, "label": "mobile client"}
        )
        case = submit_case(clinic, lesion["id"], images, "Submitted from examples/mobile_client.py")
        print(f"submitted case {case['id']} with {case['image_count']} image(s) for patient {reference}")

        wait_for(clinic, case["id"], {"awaiting_review", "reviewed", "reported"}, args.timeout, args.interval)
        detail = clinic.get(f"/cases/{case['id']}/")
        model = detail["model_version"]
        print(
            f"AI result: risk {detail['risk']:.3f} ({detail['risk_band']}) from {model['name']} {model['version']}"
        )
        for image in detail["images"]:
            prediction = image["predictions"][0]
            members = ", ".join(f"{k} {v:.3f}" for k, v in prediction["member_probabilities"].items())
            print(f"  image {image['position'] + 1}: {prediction['probability']:.3f} ({members})")

        if args.review_as:
            username, _, password = args.review_as.partition(":")
            derm = Client(args.url)
            derm.login(username, password)
            derm.post(
                f"/cases/{case['id']}/reviews/",
                json={
                    "diagnosis": "nv",
                    "malignant": False,
                    "management": "follow_up",
                    "follow_up_months": 6,
                },
            )
            derm.logout()
            print(f"reviewed as {username}")

        wait_for(clinic, case["id"], {"reported"}, args.timeout, args.interval)
        report = clinic.get(f"/cases/{case['id']}/")["reports"][-1]
        pdf = clinic.get(report["download_url"], raw=True).content
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / f"teleder-report-{report['uid']}.pdf"
        path.write_bytes(pdf)
        print(f"downloaded {path} ({len(pdf)} bytes, signed by {report['signer_name']})")
        check = clinic.post("/reports/verify/", files={"file": (path.name, pdf, "application/pdf")})
        print(f"verification: {check['status']} - {check['message']}")
        clinic.logout()
        return 0 if check["valid"] else 1
    except (ApiError, requests.RequestException) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
