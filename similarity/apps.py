from django.apps import AppConfig


class SimilarityConfig(AppConfig):
    name = "similarity"
    verbose_name = "Similar confirmed lesions"
    default_auto_field = "django.db.models.BigAutoField"
