from django.contrib import admin

from learning.models import TrainingDataSharing
from learning.services import training_sharing_set


@admin.register(TrainingDataSharing)
class TrainingDataSharingAdmin(admin.ModelAdmin):
    list_display = ("organization", "enabled", "changed_by", "changed_at")
    readonly_fields = ("changed_by", "changed_at")

    def save_model(self, request, obj, form, change):
        # Through the service, so that every change is audited with the administrator who made it.
        training_sharing_set(actor=request.user, organization=obj.organization, enabled=obj.enabled)
