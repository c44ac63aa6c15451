from django import forms

from cases.models import Organization
from inference.models import ModelVersion


class AgreementFilterForm(forms.Form):
    since = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, label="Until", widget=forms.DateInput(attrs={"type": "date"}))
    organization = forms.ModelChoiceField(queryset=Organization.objects.none(), required=False)
    model_version = forms.ModelChoiceField(
        queryset=ModelVersion.objects.order_by("-created_at"), required=False
    )

    def __init__(self, *args, organizations=None, **kwargs):
        super().__init__(*args, **kwargs)
        if organizations is not None:
            self.fields["organization"].queryset = organizations

    def clean(self):
        data = super().clean()
        if data.get("since") and data.get("until") and data["since"] > data["until"]:
            raise forms.ValidationError("'From' must not be after 'Until'.")
        return data
