from django.apps import AppConfig


class InteropConfig(AppConfig):
    """FHIR R4 results, DICOM dermoscopy images and the ISIC metadata vocabulary."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "interop"
    verbose_name = "Interoperability"
