"""Model versions in the web admin: the same registry as the management commands (register, activate,
roll back), with the registry's own messages when a package is refused."""

import tempfile
from pathlib import Path

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from inference.models import ModelVersion
from inference.registry import model_activate, model_register
from inference.selectors import previous_model_version


class RegisterPackageForm(forms.Form):
    archive = forms.FileField(
        required=False, help_text="A zipped model package (manifest.json + ONNX files)."
    )
    server_path = forms.CharField(
        required=False, max_length=500, help_text="Or a package folder or .zip already on the server."
    )
    activate = forms.BooleanField(required=False, help_text="Make it the active model once registered.")

    def clean(self):
        data = super().clean()
        if bool(data.get("archive")) == bool(data.get("server_path", "").strip()):
            raise ValidationError("Give either a zip file or a server path.")
        return data


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ["name", "version", "task", "status", "threshold", "members", "created_at", "activated_at"]
    list_filter = ["status", "task"]
    readonly_fields = [
        "name",
        "version",
        "task",
        "status",
        "threshold",
        "sha256",
        "package_path",
        "manifest",
        "metrics",
        "model_card",
        "registered_by",
        "created_at",
        "activated_at",
    ]
    actions = ["activate_selected", "roll_back"]
    change_list_template = "admin/inference/modelversion/change_list.html"

    @admin.display(description="Members")
    def members(self, obj: ModelVersion) -> int:
        return len(obj.manifest.get("members", []))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # registration goes through the register view, which validates the package

    def has_delete_permission(self, request: HttpRequest, obj: ModelVersion | None = None) -> bool:
        return False  # predictions keep pointing at the version that made them

    def get_urls(self):
        register = self.admin_site.admin_view(self.register_view)
        return [path("register/", register, name="inference_modelversion_register"), *super().get_urls()]

    def register_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_change_permission(request):
            raise admin.sites.PermissionDenied
        form = RegisterPackageForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            try:
                version = self._register(request, form.cleaned_data)
            except ValidationError as exc:
                form.add_error(None, exc)
            else:
                self.message_user(request, f"Registered {version} ({version.get_status_display().lower()}).")
                return HttpResponseRedirect(reverse("admin:inference_modelversion_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "form": form,
            "opts": self.model._meta,
            "title": "Register a model package",
        }
        return TemplateResponse(request, "admin/inference/modelversion/register.html", context)

    def _register(self, request: HttpRequest, data: dict) -> ModelVersion:
        if data.get("archive"):
            with tempfile.TemporaryDirectory() as scratch:
                archive = Path(scratch) / "package.zip"
                with open(archive, "wb") as sink:
                    for chunk in data["archive"].chunks():
                        sink.write(chunk)
                version = model_register(archive, actor=request.user)
        else:
            version = model_register(data["server_path"].strip(), actor=request.user)
        if data.get("activate"):
            version = model_activate(name=version.name, version=version.version, actor=request.user)
        return version

    @admin.action(description="Activate the selected version (exactly one)")
    def activate_selected(self, request: HttpRequest, queryset) -> None:
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one version to activate.", messages.ERROR)
            return
        self._activate(request, queryset.get())

    @admin.action(description="Roll back to the previously active version")
    def roll_back(self, request: HttpRequest, queryset) -> None:
        target = previous_model_version()
        if target is None:
            self.message_user(request, "No version was active before the current one.", messages.ERROR)
            return
        self._activate(request, target)

    def _activate(self, request: HttpRequest, target: ModelVersion) -> None:
        try:
            version = model_activate(name=target.name, version=target.version, actor=request.user)
        except ValidationError as exc:
            self.message_user(request, " ".join(exc.messages), messages.ERROR)
            return
        self.message_user(request, f"{version} is now the active model.")

    def get_queryset(self, request: HttpRequest):
        return super().get_queryset(request).order_by("-created_at")
