"""The platform's signing CA, the dermatologists' signing certificates and PAdES signing with pyHanko.

Layout under ``settings.TELEDER_SIGNING_DIR``::

    ca/ca.key.pem            CA private key, encrypted (PKCS#8, passphrase below)
    ca/ca.cert.pem           CA certificate (public: served at /reports/ca.pem)
    passphrase               random passphrase (0600), only when TELEDER_SIGNING_PASSPHRASE is empty
    signers/user-<id>.p12    one dermatologist's key + certificate, encrypted with the same passphrase

An institution can sign with its own PKCS#12 instead (``TELEDER_SIGNING_PKCS12``); the signature dictionary
then still names the dermatologist. Files are created under temporary names and linked into place, so two
workers signing at once never see half-written files and never replace a CA.
"""

import datetime as dt
import hashlib
import io
import logging
import os
import secrets
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from django.conf import settings
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign import fields, signers
from pyhanko_certvalidator.registry import SimpleCertificateStore

logger = logging.getLogger(__name__)

CA_DAYS = 20 * 365
SIGNER_DAYS = 5 * 365
# Reissue a signer certificate this long before it expires.
SIGNER_RENEW_BEFORE = dt.timedelta(days=30)
SIGNATURE_FIELD = "TeleDermReportSignature"


class SigningError(Exception):
    """Signing cannot proceed; the message says what an administrator has to fix."""


@dataclass(frozen=True)
class SignerSubject:
    """Who signs: the dermatologist, independent of the database (the benchmark signs without one)."""

    user_id: int
    name: str
    email: str = ""


@dataclass(frozen=True)
class CaInfo:
    created: bool
    cert_path: Path
    key_path: Path
    passphrase_file: Path | None
    subject: str
    fingerprint_sha256: str
    not_after: dt.datetime


def signing_dir() -> Path:
    return Path(settings.TELEDER_SIGNING_DIR)


def _ca_dir() -> Path:
    return signing_dir() / "ca"


def ca_cert_path() -> Path:
    return _ca_dir() / "ca.cert.pem"


def ca_key_path() -> Path:
    return _ca_dir() / "ca.key.pem"


def passphrase_path() -> Path:
    return signing_dir() / "passphrase"


def _write_new(path: Path, data: bytes, mode: int = 0o600) -> bool:
    """Create ``path`` with ``data`` atomically; False (and nothing written) if it already exists."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        os.unlink(tmp)


def _passphrase(*, create: bool) -> bytes:
    """The key passphrase: the setting, else the generated passphrase file (created on first use)."""
    configured = settings.TELEDER_SIGNING_PASSPHRASE
    if configured:
        return configured.encode()
    path = passphrase_path()
    if not path.exists():
        if not create:
            raise SigningError(f"No signing passphrase: set TELEDER_SIGNING_PASSPHRASE or restore {path}.")
        _write_new(path, secrets.token_urlsafe(32).encode())
        logger.warning("generated a signing key passphrase in %s (mode 0600); back it up with the keys", path)
    value = path.read_bytes().strip()
    if not value:
        raise SigningError(f"The signing passphrase file {path} is empty.")
    return value


def _name(common_name: str, organization: str = "TeleDerm") -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization[:64] or "TeleDerm"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64] or "TeleDerm"),
        ]
    )


def _fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


def _ca_info(created: bool) -> CaInfo:
    cert = x509.load_pem_x509_certificate(ca_cert_path().read_bytes())
    generated = None if settings.TELEDER_SIGNING_PASSPHRASE else passphrase_path()
    return CaInfo(
        created=created,
        cert_path=ca_cert_path(),
        key_path=ca_key_path(),
        passphrase_file=generated,
        subject=cert.subject.rfc4514_string(),
        fingerprint_sha256=_fingerprint(cert),
        not_after=cert.not_valid_after_utc,
    )


def ca_exists() -> bool:
    return ca_cert_path().is_file() and ca_key_path().is_file()


def ca_init(*, common_name: str = "TeleDerm Signing CA", organization: str = "TeleDerm") -> CaInfo:
    """Create the platform CA once. An existing CA is kept (its key must still open with the passphrase)."""
    if ca_exists():
        _load_ca()
        return _ca_info(created=False)
    passphrase = _passphrase(create=True)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    subject = _name(common_name, organization)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    # Built in a private folder and renamed into place: a concurrent creator loses the rename and uses ours.
    signing_dir().mkdir(mode=0o700, parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=signing_dir(), prefix=".ca-"))
    try:
        _write_new(
            staging / "ca.key.pem",
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(passphrase),
            ),
        )
        _write_new(staging / "ca.cert.pem", cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
        try:
            os.rename(staging, _ca_dir())
        except OSError:
            if not ca_exists():
                raise
            return _ca_info(created=False)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("created the signing CA %s (%s)", cert.subject.rfc4514_string(), _fingerprint(cert))
    return _ca_info(created=True)


def ca_certificate() -> x509.Certificate | None:
    """The platform CA certificate, or None before ``init_signing_ca``."""
    path = ca_cert_path()
    if not path.is_file():
        return None
    return x509.load_pem_x509_certificate(path.read_bytes())


def ca_certificate_pem() -> bytes | None:
    cert = ca_certificate()
    return None if cert is None else cert.public_bytes(serialization.Encoding.PEM)


_cache: dict[tuple, object] = {}
_cache_lock = threading.Lock()


def _cached(key: tuple, build):
    with _cache_lock:
        if key in _cache:
            return _cache[key]
    value = build()
    with _cache_lock:
        _cache[key] = value
    return value


def _stamp(path: Path) -> tuple:
    stat = path.stat()
    return (str(path), stat.st_mtime_ns, stat.st_size)


def _load_ca() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    if not ca_exists():
        raise SigningError("There is no signing CA yet: run `manage.py init_signing_ca`.")

    def build():
        cert = x509.load_pem_x509_certificate(ca_cert_path().read_bytes())
        try:
            key = serialization.load_pem_private_key(ca_key_path().read_bytes(), _passphrase(create=False))
        except (ValueError, TypeError) as exc:
            raise SigningError(
                "The signing CA key cannot be opened: TELEDER_SIGNING_PASSPHRASE (or the passphrase file) "
                "does not match the key it was created with."
            ) from exc
        return cert, key

    return _cached(("ca", _stamp(ca_cert_path()), _stamp(ca_key_path()), _passphrase_marker()), build)


def _passphrase_marker() -> str:
    # Part of cache keys, so that a changed passphrase is noticed; a hash, never the passphrase itself.
    try:
        return hashlib.sha256(_passphrase(create=False)).hexdigest()[:16]
    except SigningError:
        return "none"


def _issue_signer(subject: SignerSubject, passphrase: bytes) -> bytes:
    ca_cert, ca_key = _load_ca()
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    organization = ca_cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    attributes = [
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization[0].value if organization else "TeleDerm"),
        x509.NameAttribute(NameOID.COMMON_NAME, subject.name[:64] or f"user {subject.user_id}"),
        x509.NameAttribute(NameOID.USER_ID, f"teleder-user-{subject.user_id}"),
    ]
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(attributes))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(min(now + dt.timedelta(days=SIGNER_DAYS), ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    if subject.email:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.RFC822Name(subject.email)]), critical=False
        )
    cert = builder.sign(ca_key, hashes.SHA256())
    logger.info("issued a signing certificate to %s (user %s)", subject.name, subject.user_id)
    return pkcs12.serialize_key_and_certificates(
        name=f"teleder-user-{subject.user_id}".encode(),
        key=key,
        cert=cert,
        cas=[ca_cert],
        encryption_algorithm=serialization.BestAvailableEncryption(passphrase),
    )


def _signer_path(user_id: int) -> Path:
    return signing_dir() / "signers" / f"user-{int(user_id)}.p12"


def _usable(cert: x509.Certificate, subject: SignerSubject, ca_cert: x509.Certificate) -> bool:
    common_names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return (
        cert.issuer == ca_cert.subject
        and bool(common_names)
        and common_names[0].value == (subject.name[:64] or f"user {subject.user_id}")
        and cert.not_valid_after_utc - SIGNER_RENEW_BEFORE > dt.datetime.now(dt.UTC)
    )


def _simple_signer(p12: bytes, passphrase: bytes | None, source: str) -> signers.SimpleSigner:
    try:
        key, cert, extra = pkcs12.load_key_and_certificates(p12, passphrase)
    except (ValueError, TypeError) as exc:
        raise SigningError(f"{source} cannot be opened with the configured passphrase.") from exc
    if key is None or cert is None:
        raise SigningError(f"{source} holds no private key and certificate.")
    key_der = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    asn1_cert = asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))
    chain = [asn1_x509.Certificate.load(c.public_bytes(serialization.Encoding.DER)) for c in extra]
    return signers.SimpleSigner(
        signing_cert=asn1_cert,
        signing_key=asn1_keys.PrivateKeyInfo.load(key_der),
        cert_registry=SimpleCertificateStore.from_certs([asn1_cert, *chain]),
    )


def institution_configured() -> bool:
    return bool(getattr(settings, "TELEDER_SIGNING_PKCS12", ""))


def _institution_signer() -> signers.SimpleSigner:
    path = Path(settings.TELEDER_SIGNING_PKCS12)
    if not path.is_file():
        raise SigningError(f"TELEDER_SIGNING_PKCS12 points to {path}, which does not exist.")
    passphrase = getattr(settings, "TELEDER_SIGNING_PKCS12_PASSPHRASE", "") or None
    return _cached(
        ("institution", _stamp(path), hashlib.sha256((passphrase or "").encode()).hexdigest()[:16]),
        lambda: _simple_signer(
            path.read_bytes(), passphrase.encode() if passphrase else None, "The institution's PKCS#12 file"
        ),
    )


def signer_for(subject: SignerSubject) -> signers.SimpleSigner:
    """The pyHanko signer for a dermatologist: the institution's PKCS#12 if configured, else their own
    certificate from the platform CA, issued on first signing (and again if their name changes or it
    is about to expire)."""
    if institution_configured():
        return _institution_signer()
    ca_cert, _ = _load_ca()
    passphrase = _passphrase(create=False)
    path = _signer_path(subject.user_id)
    if path.is_file():
        signer = _cached(
            ("signer", _stamp(path), _passphrase_marker()),
            lambda: _simple_signer(
                path.read_bytes(), passphrase, f"The signing key of user {subject.user_id}"
            ),
        )
        cert = x509.load_der_x509_certificate(signer.signing_cert.dump())
        if _usable(cert, subject, ca_cert):
            return signer
        logger.info("reissuing the signing certificate of user %s", subject.user_id)
    data = _issue_signer(subject, passphrase)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.is_file():
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    elif not _write_new(path, data):
        data = path.read_bytes()  # another worker issued one at the same moment: use theirs
    return _simple_signer(data, passphrase, f"The signing key of user {subject.user_id}")


def trust_roots() -> list[asn1_x509.Certificate]:
    """Certificates a report signature must chain to: the platform CA and, if configured, the CA
    certificates in the institution's PKCS#12."""
    roots = []
    cert = ca_certificate()
    if cert is not None:
        roots.append(asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER)))
    if institution_configured():
        try:
            signer = _institution_signer()
        except SigningError:
            logger.warning("the institution's PKCS#12 cannot be read; its signatures will not be trusted")
        else:
            chain = [c for c in signer.cert_registry if c.dump() != signer.signing_cert.dump()]
            roots.extend(chain or [signer.signing_cert])
    return roots


def sign_pdf(pdf: bytes, *, subject: SignerSubject, reason: str, location: str = "") -> bytes:
    """Sign ``pdf`` as a PAdES (ETSI.CAdES.detached) signature naming ``subject`` and ``reason``."""
    signer = signer_for(subject)
    writer = IncrementalPdfFileWriter(io.BytesIO(pdf))
    meta = signers.PdfSignatureMetadata(
        field_name=SIGNATURE_FIELD,
        name=subject.name,
        reason=reason,
        location=location or None,
        subfilter=fields.SigSeedSubFilter.PADES,
        md_algorithm="sha256",
    )
    return signers.sign_pdf(writer, meta, signer=signer).getvalue()
