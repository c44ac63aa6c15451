from django.contrib import admin

from inference.models import ModelVersion


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ["name", "version", "task", "status", "threshold", "created_at", "activated_at"]
    list_filter = ["status", "task"]
    readonly_fields = ["sha256", "package_path", "manifest", "metrics", "created_at", "activated_at"]
