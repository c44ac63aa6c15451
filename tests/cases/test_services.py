import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from cases import services
from cases.models import AuditEvent, Case, CaseStatus
from tests.support.images import image_bytes, upload


def test_case_submit_stores_images_and_audits(make_case, clinician):
    case = make_case(2)
    assert case.status == CaseStatus.SUBMITTED
    assert case.images.count() == 2
    first = case.images.first()
    assert first.width == 64 and first.height == 48 and len(first.sha256) == 64
    assert AuditEvent.objects.filter(action="case.create", object_id=str(case.pk), actor=clinician).exists()


def test_submission_key_returns_the_same_case(make_case):
    first = make_case(1, submission_key="abc")
    second = make_case(1, submission_key="abc")
    assert first.pk == second.pk
    assert Case.objects.count() == 1


def test_case_needs_at_least_one_and_at_most_ten_images(clinician, lesion):
    with pytest.raises(ValidationError) as exc:
        services.case_submit(actor=clinician, lesion=lesion, images=[], analyse=False)
    assert "images" in exc.value.message_dict
    with pytest.raises(ValidationError):
        services.case_submit(
            actor=clinician, lesion=lesion, images=[upload(seed=i) for i in range(11)], analyse=False
        )
    assert Case.objects.count() == 0


def test_renamed_non_image_is_refused_and_nothing_stored(clinician, lesion):
    fake = upload("lesion.jpg", content=b"<html><script>alert(1)</script></html>")
    with pytest.raises(ValidationError) as exc:
        services.case_submit(actor=clinician, lesion=lesion, images=[fake], analyse=False)
    assert "not a JPEG or PNG" in str(exc.value)
    assert Case.objects.count() == 0


def test_illegal_transitions_are_refused(make_case, dermatologist):
    case = make_case(1)
    with pytest.raises(services.IllegalTransition):
        services.review_submit(
            actor=dermatologist, case=case, diagnosis="nv", malignant=False, management="reassure"
        )
    case.refresh_from_db()
    assert case.status == CaseStatus.SUBMITTED
    with pytest.raises(services.IllegalTransition):
        services.case_mark_reported(case_id=case.pk)


def test_failed_case_keeps_reason_and_admin_can_retry(make_case, platform_admin, clinician):
    case = make_case(1)
    services.case_fail(case_id=case.pk, reason="Image 1 could not be decoded.")
    case.refresh_from_db()
    assert case.status == CaseStatus.FAILED and "decoded" in case.failure_reason
    with pytest.raises(PermissionDenied):
        services.case_retry(actor=clinician, case=case)
    services.case_retry(actor=platform_admin, case=case)
    case.refresh_from_db()
    assert case.status == CaseStatus.SUBMITTED and case.failure_reason == ""


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("year_of_birth", {"year_of_birth": 1850}),
        ("year_of_birth", {"year_of_birth": 2999}),
        ("sex", {"sex": "robot"}),
    ],
)
def test_invalid_patient_metadata_is_refused(clinician, org, field, kwargs):
    with pytest.raises(ValidationError) as exc:
        services.patient_create(actor=clinician, organization=org, reference="X-1", **kwargs)
    assert field in exc.value.message_dict


def test_unknown_site_is_refused(clinician, patient):
    with pytest.raises(ValidationError) as exc:
        services.lesion_create(actor=clinician, patient=patient, site="elbow")
    assert "site" in exc.value.message_dict


def test_duplicate_patient_reference_in_one_organization(clinician, org):
    services.patient_create(actor=clinician, organization=org, reference="R-7")
    with pytest.raises(ValidationError) as exc:
        services.patient_create(actor=clinician, organization=org, reference="r-7")
    assert "reference" in exc.value.message_dict


def test_clinician_cannot_submit_for_another_organization(other_clinician, lesion):
    with pytest.raises(PermissionDenied):
        services.case_submit(actor=other_clinician, lesion=lesion, images=[upload()], analyse=False)


def test_uploaded_image_loses_its_exif(make_case):
    from PIL import Image

    exif = Image.Exif()
    exif[0x010F] = "CameraMaker"  # Make
    exif[0x8825] = {2: (51.0, 30.0, 0.0)}  # GPS
    case = make_case(0 + 1)
    from cases.services import case_submit
    from tests.support.images import upload as up

    sub = case_submit(
        actor=case.submitted_by,
        lesion=case.lesion,
        images=[up(content=image_bytes(exif=exif.tobytes()))],
        analyse=False,
    )
    stored = sub.case.images.get()
    with stored.file.open("rb") as fh, Image.open(fh) as img:
        assert not img.getexif()


def test_a_claim_is_a_conditional_update_and_loses_to_a_worker_that_claimed_first(make_case):
    from django.db import connection

    case = make_case(1)
    raced = []

    def another_worker_claims_after_the_read(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if not raced and sql.lstrip().upper().startswith("SELECT") and "cases_case" in sql:
            raced.append(sql)
            Case.objects.filter(pk=case.pk).update(status=CaseStatus.ANALYSING, analysis_attempts=1)
        return result

    with connection.execute_wrapper(another_worker_claims_after_the_read):
        assert services.case_claim_for_analysis(case_id=case.pk) is None
    assert raced
    case.refresh_from_db()
    assert case.analysis_attempts == 1  # only the other worker's claim counted
    # A later delivery of the message (the other worker died) claims the case again.
    assert services.case_claim_for_analysis(case_id=case.pk).analysis_attempts == 2
    assert services.case_claim_for_analysis(case_id=case.pk).analysis_attempts == 3


def test_one_rule_decides_a_new_patients_organization(
    clinician, dermatologist, platform_admin, org, other_org
):
    from cases.models import Organization

    assert services.patient_organization(actor=clinician) == org
    with pytest.raises(ValidationError) as asked:  # an admin submits for both: it must be chosen
        services.patient_organization(actor=platform_admin)
    assert asked.value.message_dict == {"organization": ["Choose the organization."]}
    assert services.patient_organization(actor=platform_admin, organization_id=other_org.pk) == other_org
    with pytest.raises(Organization.DoesNotExist):  # another organization's id is not visible
        services.patient_organization(actor=clinician, organization_id=other_org.pk)
    with pytest.raises(PermissionDenied):
        services.patient_organization(actor=dermatologist)


def test_web_intake_asks_an_admin_of_several_organizations_which_one(client, platform_admin, org, other_org):
    from django.urls import reverse

    client.force_login(platform_admin)
    form = {"reference": "P-77", "sex": "female", "year_of_birth": "1980"}
    page = client.post(reverse("patient_list"), form)
    assert page.status_code == 400 and b"Choose the organization." in page.content
    assert client.post(reverse("patient_list"), {**form, "organization": other_org.pk}).status_code == 302
    assert other_org.patients.get().reference == "P-77"
