"""The signing CA command, per-dermatologist certificates and an institution's own PKCS#12."""

import datetime as dt
import io

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from django.core.management import CommandError, call_command

from cases import services
from cases.reports import signing, verify
from cases.reports.services import report_generate
from tests.cases.reports.helpers import file_mode, stored_bytes
from tests.support.factories import UserFactory


def _run(*args) -> str:
    out = io.StringIO()
    call_command("init_signing_ca", *args, stdout=out)
    return out.getvalue()


def test_init_signing_ca_creates_an_encrypted_key_and_a_private_passphrase_file(signing_dir):
    output = _run()
    assert "Created the signing CA" in output and "passphrase: generated" in output
    key_pem = (signing_dir / "ca" / "ca.key.pem").read_bytes()
    assert key_pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    with pytest.raises(TypeError):  # it cannot be opened without the passphrase
        serialization.load_pem_private_key(key_pem, password=None)
    passphrase = (signing_dir / "passphrase").read_bytes()
    assert (
        file_mode(signing_dir / "passphrase") == 0o600
        and file_mode(signing_dir / "ca" / "ca.key.pem") == 0o600
    )
    serialization.load_pem_private_key(key_pem, password=passphrase)
    cert = x509.load_pem_x509_certificate((signing_dir / "ca" / "ca.cert.pem").read_bytes())
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_init_signing_ca_twice_keeps_the_first_ca(signing_dir):
    _run()
    first = (signing_dir / "ca" / "ca.cert.pem").read_bytes()
    output = _run("--common-name", "Another CA")
    assert "already exists" in output
    assert (signing_dir / "ca" / "ca.cert.pem").read_bytes() == first


def test_configured_passphrase_is_used_and_a_wrong_one_is_a_clear_error(signing_dir, settings):
    settings.TELEDER_SIGNING_PASSPHRASE = "a long configured passphrase"
    output = _run()
    assert "passphrase: generated" not in output and not (signing_dir / "passphrase").exists()
    settings.TELEDER_SIGNING_PASSPHRASE = "not the passphrase"
    with pytest.raises(CommandError, match="TELEDER_SIGNING_PASSPHRASE"):
        _run()


def test_each_dermatologist_gets_one_certificate_issued_on_first_signing(report, org, signing_dir, make_case):
    path = signing_dir / "signers" / f"user-{report.signer_id}.p12"
    assert path.is_file() and file_mode(path) == 0o600
    issued = path.read_bytes()
    subject = verify.verify_report_pdf(stored_bytes(report)).certificate_subject
    assert report.signer.display_name in subject

    second_derm = UserFactory(
        username="derm2", first_name="Kim", last_name="Nowak", role="dermatologist", organizations=[org]
    )
    correction = services.review_correct(
        actor=second_derm,
        case=report.case,
        reason="Second opinion after multidisciplinary review.",
        diagnosis="nv",
        malignant=False,
        management="reassure",
    )
    addendum = report_generate(review_id=correction.pk)
    result = verify.verify_report_pdf(stored_bytes(addendum))
    assert result.valid and result.signer_name == "Kim Nowak" and "Kim Nowak" in result.certificate_subject
    assert path.read_bytes() == issued  # the first dermatologist's certificate was not touched
    assert (signing_dir / "signers" / f"user-{second_derm.pk}.p12").is_file()


def test_signing_without_a_ca_says_how_to_create_one(review):
    with pytest.raises(signing.SigningError, match="init_signing_ca"):
        report_generate(review_id=review.pk)


def _institution_pkcs12(tmp_path, passphrase: bytes):
    now = dt.datetime.now(dt.UTC)
    root_key = ec.generate_private_key(ec.SECP256R1())
    root_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "St Example Hospital Root")])
    root = (
        x509.CertificateBuilder()
        .subject_name(root_name)
        .issuer_name(root_name)
        .public_key(root_key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(root_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "St Example Dermatology Department")])
        )
        .issuer_name(root_name)
        .public_key(key.public_key())
        .serial_number(2)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(root_key, hashes.SHA256())
    )
    path = tmp_path / "institution.p12"
    path.write_bytes(
        pkcs12.serialize_key_and_certificates(
            b"institution", key, leaf, [root], serialization.BestAvailableEncryption(passphrase)
        )
    )
    return path


def test_institution_pkcs12_signs_and_still_names_the_dermatologist(
    review, settings, tmp_path, dermatologist
):
    settings.TELEDER_SIGNING_PKCS12 = str(_institution_pkcs12(tmp_path, b"hospital secret"))
    settings.TELEDER_SIGNING_PKCS12_PASSPHRASE = "hospital secret"
    report = report_generate(review_id=review.pk)
    result = verify.verify_report_pdf(stored_bytes(report))
    assert result.valid and result.trusted
    assert result.signer_name == dermatologist.display_name
    assert "St Example Dermatology Department" in result.certificate_subject


def test_institution_pkcs12_with_a_wrong_passphrase_is_a_clear_error(review, settings, tmp_path):
    settings.TELEDER_SIGNING_PKCS12 = str(_institution_pkcs12(tmp_path, b"hospital secret"))
    settings.TELEDER_SIGNING_PKCS12_PASSPHRASE = "wrong"
    with pytest.raises(signing.SigningError, match="PKCS#12"):
        report_generate(review_id=review.pk)


def test_init_signing_ca_is_quiet_at_verbosity_0(signing_dir):
    out = io.StringIO()
    call_command("init_signing_ca", verbosity=0, stdout=out)
    assert out.getvalue() == "" and (signing_dir / "ca" / "ca.cert.pem").is_file()
