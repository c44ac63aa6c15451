"""``manage.py init_signing_ca``: create the platform's report-signing CA (once; a second run keeps it)."""

from django.core.management.base import BaseCommand, CommandError

from cases.reports import signing


class Command(BaseCommand):
    help = (
        "Create the CA that issues the dermatologists' report-signing certificates. The key is stored "
        "encrypted under TELEDER_SIGNING_DIR with TELEDER_SIGNING_PASSPHRASE (or a generated passphrase file). "
        "An existing CA is kept."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--common-name", default="TeleDerm Signing CA", help="The CA certificate's name.")
        parser.add_argument("--organization", default="TeleDerm", help="Organization in the CA certificate.")

    def handle(self, *args, common_name: str, organization: str, verbosity: int = 1, **options) -> None:
        try:
            info = signing.ca_init(common_name=common_name, organization=organization)
        except signing.SigningError as exc:
            raise CommandError(str(exc)) from exc
        except OSError as exc:
            raise CommandError(f"Cannot write under {signing.signing_dir()}: {exc.strerror or exc}") from exc
        if verbosity == 0:
            return
        if info.created:
            self.stdout.write(self.style.SUCCESS(f"Created the signing CA {info.subject}."))
        else:
            self.stdout.write(f"The signing CA already exists ({info.subject}); kept it.")
        self.stdout.write(f"  certificate: {info.cert_path}")
        self.stdout.write(f"  key (encrypted): {info.key_path}")
        self.stdout.write(f"  SHA-256 fingerprint: {info.fingerprint_sha256}")
        self.stdout.write(f"  valid until: {info.not_after:%Y-%m-%d}")
        if info.passphrase_file is not None:
            self.stdout.write(
                self.style.WARNING(
                    f"  passphrase: generated in {info.passphrase_file} (mode 0600). Back it up with the key, "
                    "or set TELEDER_SIGNING_PASSPHRASE."
                )
            )
        if signing.institution_configured():
            self.stdout.write(
                "  note: TELEDER_SIGNING_PKCS12 is set, so reports are signed with that certificate."
            )
