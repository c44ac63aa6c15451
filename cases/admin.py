from django.contrib import admin
from django.contrib.auth.admin import UserAdmin

from cases.models import (
    AuditEvent,
    Case,
    Lesion,
    LesionImage,
    Organization,
    Patient,
    Prediction,
    Report,
    Review,
    User,
)


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "review_target_hours", "created_at"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}


@admin.register(User)
class TeleDermUserAdmin(UserAdmin):
    list_display = ["username", "email", "role", "is_active", "last_login"]
    list_filter = ["role", "is_active", "organizations"]
    fieldsets = [
        *UserAdmin.fieldsets,
        (
            "TeleDerm",
            {
                "fields": [
                    "role",
                    "organizations",
                    "credentials",
                    "registration_number",
                    "email_notifications",
                ]
            },
        ),
    ]
    add_fieldsets = [*UserAdmin.add_fieldsets, ("TeleDerm", {"fields": ["role", "organizations"]})]
    filter_horizontal = ["organizations", "groups", "user_permissions"]


@admin.register(Patient)
class PatientAdmin(admin.ModelAdmin):
    list_display = ["reference", "organization", "sex", "year_of_birth", "created_at"]
    list_filter = ["organization", "sex"]
    search_fields = ["reference"]
    raw_id_fields = ["created_by"]


@admin.register(Lesion)
class LesionAdmin(admin.ModelAdmin):
    list_display = ["id", "patient", "site", "label"]
    list_filter = ["site"]
    raw_id_fields = ["patient"]


class LesionImageInline(admin.TabularInline):
    model = LesionImage
    extra = 0
    can_delete = False
    readonly_fields = ["position", "file", "sha256", "width", "height", "content_type", "size_bytes"]


@admin.register(Case)
class CaseAdmin(admin.ModelAdmin):
    """Status changes go through services (retry lives in the admin pages of the web app); fields here are read-only."""

    list_display = ["id", "organization", "status", "risk", "risk_band", "priority", "created_at"]
    list_filter = ["status", "risk_band", "priority", "organization"]
    search_fields = ["id", "lesion__patient__reference"]
    inlines = [LesionImageInline]

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Prediction)
class PredictionAdmin(admin.ModelAdmin):
    list_display = ["image", "model_version", "probability", "risk_band", "latency_ms", "created_at"]
    list_filter = ["model_version", "risk_band"]

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Review)
class ReviewAdmin(admin.ModelAdmin):
    list_display = [
        "case",
        "reviewer",
        "diagnosis",
        "malignant",
        "management",
        "agrees_with_ai",
        "created_at",
    ]
    list_filter = ["diagnosis", "management", "agrees_with_ai"]

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Report)
class ReportAdmin(admin.ModelAdmin):
    list_display = ["uid", "case", "signer_name", "signed_at", "sha256"]

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ["created_at", "actor", "action", "object_type", "object_id", "organization", "ip_address"]
    list_filter = ["action", "object_type", "organization"]
    search_fields = ["object_id", "actor__username", "request_id"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
