"""The similarity library: imported reference sets and the stored embeddings of every library image.

An ``Embedding`` belongs to one model version and to exactly one image: a platform case image
(``cases.LesionImage``) or an imported ``ReferenceImage``. Vectors are float32 bytes; the method that made
them (``similarity.embedding``) is stored with them, so vectors of different methods are never compared.
"""

import uuid

import numpy as np
from django.conf import settings
from django.db import models
from django.db.models import Q


class ReferenceSet(models.Model):
    """A labelled image set imported by an administrator (``manage.py import_reference_set``): no patient
    data, only images, diagnoses and where they come from."""

    source = models.CharField(max_length=200, unique=True, help_text="Where the images come from.")
    licence = models.TextField(help_text="Under which licence the images may be shown.")
    csv_name = models.CharField(max_length=255, blank=True)
    imported_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["source"]

    def __str__(self) -> str:
        return self.source


def reference_image_path(instance: "ReferenceImage", filename: str) -> str:
    return f"references/{instance.reference_set_id}/{uuid.uuid4().hex}.jpg"


def reference_thumbnail_path(instance: "ReferenceImage", filename: str) -> str:
    return f"references/{instance.reference_set_id}/thumbs/{uuid.uuid4().hex}.jpg"


class ReferenceImage(models.Model):
    reference_set = models.ForeignKey(ReferenceSet, on_delete=models.CASCADE, related_name="images")
    image_id = models.CharField(
        max_length=200, help_text="The image's id in its source (the CSV's image_id)."
    )
    diagnosis = models.CharField(max_length=100)
    malignant = models.BooleanField()
    # A re-encoded copy (at most 600 px, EXIF removed) from which features are recomputed for a new model.
    file = models.FileField(upload_to=reference_image_path, max_length=255)
    thumbnail = models.FileField(upload_to=reference_thumbnail_path, max_length=255)
    sha256 = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["reference_set", "image_id"]
        constraints = [
            models.UniqueConstraint(fields=["reference_set", "image_id"], name="reference_image_unique_id")
        ]

    def __str__(self) -> str:
        return f"{self.reference_set.source} {self.image_id}"


class Embedding(models.Model):
    model_version = models.ForeignKey(
        "inference.ModelVersion", on_delete=models.CASCADE, related_name="embeddings"
    )
    image = models.ForeignKey(
        "cases.LesionImage", null=True, blank=True, on_delete=models.CASCADE, related_name="embeddings"
    )
    reference = models.ForeignKey(
        ReferenceImage, null=True, blank=True, on_delete=models.CASCADE, related_name="embeddings"
    )
    method = models.CharField(max_length=16)
    dims = models.PositiveIntegerField()
    vector = models.BinaryField(help_text="float32 little-endian, unit length.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(image__isnull=False, reference__isnull=True)
                | Q(image__isnull=True, reference__isnull=False),
                name="embedding_of_one_image",
            ),
            models.UniqueConstraint(
                fields=["model_version", "image"],
                condition=Q(image__isnull=False),
                name="embedding_unique_image",
            ),
            models.UniqueConstraint(
                fields=["model_version", "reference"],
                condition=Q(reference__isnull=False),
                name="embedding_unique_reference",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.method} embedding of {self.image_id or f'reference {self.reference_id}'}"

    def as_array(self) -> np.ndarray:
        return np.frombuffer(bytes(self.vector), dtype="<f4")
