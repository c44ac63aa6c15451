"""The whole flow in a real browser against a live server and a real Celery worker:

a clinician logs in, creates a patient and submits a case with two images, and sees the AI risk appear
without reloading; a dermatologist finds the case at the top of the queue, confirms the AI's flag with a
basal cell carcinoma and signs;
the clinician downloads the signed report.
"""

import pytest

pytest.importorskip("playwright.sync_api")

from playwright.sync_api import expect  # noqa: E402

from cases.models import Case, Review  # noqa: E402
from tests.support.images import image_bytes  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.integration]

DESKTOP = {"width": 1280, "height": 900}
TABLET = {"width": 820, "height": 1180}


@pytest.fixture
def signing_ca(settings, tmp_path):
    from cases.reports import signing

    settings.TELEDER_SIGNING_DIR = tmp_path / "signing"
    return signing.ca_init()


@pytest.fixture
def lower_risk_case(make_case, record_analysis):
    """An older analysed case with the lowest possible risk: the new case must come above it."""
    case = make_case(1, submission_key="older-low-risk")
    record_analysis(case, [0.0])
    return case


def log_in(page, live_server, username: str, password: str) -> None:
    page.goto(f"{live_server.url}/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Welcome")


def test_submit_analyse_review_and_download(
    live_server,
    clinician,
    dermatologist,
    password,
    registered_model,
    signing_ca,
    lower_risk_case,
    celery_worker_process,
    screenshots,
    tmp_path,
    chromium,
):
    files = []
    for i, fmt in enumerate(("JPEG", "PNG")):
        path = tmp_path / f"lesion{i}.{fmt.lower()}"
        path.write_bytes(image_bytes(320, 240, fmt=fmt, seed=10 + i))
        files.append(str(path))

    clinic = chromium.new_context(viewport=DESKTOP, accept_downloads=True)
    page = clinic.new_page()
    # Anything the Content-Security-Policy blocks shows up as a console error: there must be none.
    blocked: list[str] = []
    page.on(
        "console", lambda msg: blocked.append(msg.text) if "Content Security Policy" in msg.text else None
    )
    log_in(page, live_server, clinician.username, password)

    # A new patient.
    page.get_by_role("link", name="Patients").first.click()
    page.get_by_label("Patient reference").fill("E2E-0001")
    page.get_by_label("Sex").select_option("female")
    page.get_by_label("Year of birth").fill("1958")
    page.get_by_role("button", name="Add patient").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Patient E2E-0001")

    # A case for that patient with two images, a site chosen on the body picker.
    page.get_by_role("link", name="New case for this patient").click()
    expect(page.locator("#patient-facts")).to_contain_text("1958")
    page.get_by_role("button", name="Torso").click()
    expect(page.get_by_label("Anatomical site")).to_have_value("torso")
    page.get_by_label("Lesion description").fill("left scapula")
    page.get_by_label("Clinical notes").fill("Growing, irregular border.")
    # A file that is not an image is caught before anything is sent.
    not_an_image = tmp_path / "notes.txt"
    not_an_image.write_text("not a picture")
    page.locator("input[name=images]").set_input_files(str(not_an_image))
    expect(page.locator("#image-client-errors")).to_contain_text("notes.txt is not a JPEG or PNG image.")
    page.locator("input[name=images]").set_input_files(files)
    expect(page.locator("#previews img")).to_have_count(2)
    expect(page.locator("#image-client-errors li")).to_have_count(0)
    page.screenshot(path=screenshots / "case-form-desktop.png", full_page=True)

    # A server-side error (no patient chosen) keeps what was typed and both images.
    expect(page.get_by_label("Patient", exact=True)).to_have_value("E2E-0001")
    page.get_by_label("Patient", exact=True).fill("")
    page.get_by_role("button", name="Submit case").click()
    expect(page.get_by_text("Choose a patient or give a reference for a new one.")).to_be_visible()
    expect(page.locator(".kept img")).to_have_count(2)
    expect(page.get_by_label("Lesion description")).to_have_value("left scapula")
    expect(page.get_by_label("Clinical notes")).to_have_value("Growing, irregular border.")
    page.set_viewport_size(TABLET)
    page.screenshot(path=screenshots / "case-form-error-tablet.png", full_page=True)
    page.set_viewport_size(DESKTOP)
    page.get_by_label("Patient", exact=True).fill("E2E")  # the typeahead suggests; the exact reference picks
    expect(page.locator("#patient-options option")).to_have_count(1)
    page.get_by_label("Patient", exact=True).fill("E2E-0001")
    expect(page.locator("#patient-facts")).to_contain_text("1958")
    page.get_by_role("button", name="Submit case").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Case ")
    case = Case.objects.get(submitted_by=clinician, lesion__patient__reference="E2E-0001")
    assert page.url.endswith(f"/cases/{case.pk}/")
    assert case.images.count() == 2

    # The risk appears without a reload: a marker set on this document survives.
    page.evaluate("window.__sameDocument = true")
    try:
        expect(page.locator(".ai-result .probability")).to_have_count(2, timeout=90_000)
    except AssertionError as exc:
        case.refresh_from_db()
        raise AssertionError(
            f"case {case.status}; worker log:\n{celery_worker_process.log()[-4000:]}"
        ) from exc
    expect(page.locator("#case-status .status")).to_have_text("Awaiting review")
    assert page.evaluate("window.__sameDocument === true")
    page.screenshot(path=screenshots / "case-analysed-desktop.png", full_page=True)

    # The dermatologist: the case is at the top of the queue; the AI flagged it (0.72 >= 0.3): confirm and sign.
    derm = chromium.new_context(viewport=TABLET)
    review_page = derm.new_page()
    review_page.on(
        "console", lambda msg: blocked.append(msg.text) if "Content Security Policy" in msg.text else None
    )
    log_in(review_page, live_server, dermatologist.username, password)
    review_page.get_by_role("link", name="Review queue").first.click()
    rows = review_page.locator("tr.queue-row")
    expect(rows).to_have_count(2)
    expect(rows.first).to_have_attribute("data-case-id", str(case.pk))
    review_page.screenshot(path=screenshots / "queue-tablet.png", full_page=True)
    rows.first.get_by_role("link").click()
    expect(review_page.locator(".members").first).to_contain_text("member0")
    review_page.locator(".zoomable").first.click()
    zoom = review_page.locator("#zoom-dialog")
    expect(zoom).to_be_visible()
    zoom.get_by_role("button", name="Zoom in").click()
    expect(zoom.locator("img")).to_have_attribute("style", "transform: translate(0px, 0px) scale(1.5);")
    zoom.get_by_role("button", name="Close").click()
    expect(zoom).to_be_hidden()
    review_page.get_by_label("Confirm the AI").check()
    review_page.get_by_label("Diagnosis").select_option("bcc")
    review_page.get_by_label("Yes").check()
    review_page.get_by_label("Management").select_option("biopsy")
    review_page.get_by_label("Notes").fill("Arborising vessels.")
    review_page.screenshot(path=screenshots / "review-tablet.png", full_page=True)
    review_page.get_by_role("button", name="Sign review").click()
    expect(review_page.locator(".messages")).to_contain_text(f"Review of case {case.pk} signed")
    review = Review.objects.get(case=case)
    assert review.diagnosis == "bcc" and review.ai_flagged is True and review.agrees_with_ai is True

    # Back on the clinician's open page: the review and then the report arrive by themselves.
    expect(page.locator("#review-section .diagnosis")).to_have_text("Basal cell carcinoma", timeout=60_000)
    download_link = page.get_by_role("link", name="Download the report (PDF)")
    expect(download_link).to_be_visible(timeout=90_000)
    assert page.evaluate("window.__sameDocument === true")
    page.screenshot(path=screenshots / "case-reported-desktop.png", full_page=True)
    with page.expect_download() as download_info:
        download_link.click()
    pdf = download_info.value.path().read_bytes()
    assert pdf.startswith(b"%PDF")
    case.refresh_from_db()
    assert case.status == "reported"
    assert blocked == []
    clinic.close()
    derm.close()
