"""The review workflow in a real browser at phone width (375 px), against a live server (no worker needed):
a consistent review is signed, a contradictory one is blocked with a message, a case is returned for better
images; the new-case form and the verify page do not scroll sideways."""

import pytest

pytest.importorskip("playwright.sync_api")

from playwright.sync_api import expect  # noqa: E402

from cases.models import Case, Review  # noqa: E402
from tests.e2e.test_browser import log_in  # noqa: E402

pytestmark = [pytest.mark.browser]

PHONE = {"width": 375, "height": 812}


def assert_no_sideways_scroll(page, what: str) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    wide = page.evaluate(
        """() => Array.from(document.querySelectorAll('body *'))
        .filter(e => e.getBoundingClientRect().right > window.innerWidth + 0.5)
        .slice(0, 5)
        .map(e => e.tagName + '#' + e.id + ' ' + Math.round(e.getBoundingClientRect().right))"""
    )
    assert width <= PHONE["width"], f"{what} is {width} px wide at {PHONE['width']} px: {wide}"


def test_review_workflow_at_phone_width(
    live_server,
    clinician,
    dermatologist,
    password,
    make_case,
    record_analysis,
    screenshots,
    tmp_path,
    chromium,
):
    contradicted = make_case(1, submission_key="contradicted")
    record_analysis(contradicted, [0.05])
    returned = make_case(1, submission_key="returned")
    record_analysis(returned, [0.05])
    waiting = make_case(1, submission_key="waiting")  # submitted, not analysed: its page polls

    clinic = chromium.new_context(viewport=PHONE)
    page = clinic.new_page()
    log_in(page, live_server, clinician.username, password)
    # The live case page asks for the status well before 2 s (results are often ready after 0.4 s).
    with page.expect_request(f"**/cases/{waiting.pk}/status.json", timeout=1500):
        page.goto(f"{live_server.url}/cases/{waiting.pk}/")
    page.goto(f"{live_server.url}/cases/new/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Submit a new case")
    expect(page.locator("input[name=images]")).to_have_attribute("capture", "environment")
    page.screenshot(path=screenshots / "case-form-phone.png", full_page=True)
    assert_no_sideways_scroll(page, "the new-case form")
    page.goto(f"{live_server.url}/reports/verify/?report=00000000-0000-0000-0000-000000000000")
    assert_no_sideways_scroll(page, "the verify page")
    not_a_report = tmp_path / "report.pdf"
    not_a_report.write_bytes(b"%PDF-1.7\n" + b"x" * 2000)
    page.locator("input[name=file]").set_input_files(str(not_a_report))
    page.get_by_role("button", name="Verify").click()
    expect(page.locator(".verify-result")).to_be_visible()
    page.screenshot(path=screenshots / "verify-result-phone.png", full_page=True)
    assert_no_sideways_scroll(page, "the verify result")

    derm = chromium.new_context(viewport=PHONE)
    review_page = derm.new_page()
    log_in(review_page, live_server, dermatologist.username, password)
    review_page.goto(f"{live_server.url}/review/{contradicted.pk}/")
    assert_no_sideways_scroll(review_page, "the review page")
    form = review_page.locator("#review-form")
    # Melanoma called benign and reassured: blocked, with the reasons, nothing signed.
    form.get_by_label("Confirm the AI").check()
    form.get_by_label("Diagnosis").select_option("mel")
    form.get_by_label("No", exact=True).check()
    form.get_by_label("Management").select_option("reassure")
    form.get_by_role("button", name="Sign review").click()
    expect(review_page.get_by_text("Melanoma is a malignant diagnosis", exact=False)).to_be_visible()
    expect(review_page.get_by_text("cannot be managed with 'Reassure", exact=False)).to_be_visible()
    review_page.screenshot(path=screenshots / "review-blocked-phone.png", full_page=True)
    assert not Review.objects.exists()
    # The consistent review: the AI did not flag the lesion, the dermatologist calls it malignant.
    form = review_page.locator("#review-form")
    form.get_by_label("Override the AI").check()
    form.get_by_label("Yes", exact=True).check()
    form.get_by_label("Management").select_option("biopsy")
    form.get_by_role("button", name="Sign review").click()
    expect(review_page.locator(".messages")).to_contain_text(f"Review of case {contradicted.pk} signed")
    review = Review.objects.get()
    assert review.malignant and review.ai_flagged is False and review.agrees_with_ai is False

    # Return the other case for better images.
    review_page.goto(f"{live_server.url}/review/{returned.pk}/")
    images_form = review_page.locator("#request-images-form")
    images_form.get_by_label("What is needed").select_option("blurred")
    images_form.get_by_role("button", name="Return for better images").click()
    expect(review_page.locator(".messages")).to_contain_text("returned to the clinician")
    assert Case.objects.get(pk=returned.pk).status == "needs_images"
    page.goto(f"{live_server.url}/cases/{returned.pk}/")
    expect(page.locator("#complete-case")).to_contain_text("Images blurred or out of focus")
    assert_no_sideways_scroll(page, "the case page")
    clinic.close()
    derm.close()
