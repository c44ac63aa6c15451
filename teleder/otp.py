"""Optional two-factor login (TOTP, django-otp): whoever has a confirmed authenticator device must give a code.

Enrolment is optional and done by an administrator in the Django admin (OTP_TOTP > TOTP devices > Add: pick
the user, save, open the QR code link and let the user scan it). Dermatologists and administrators are
expected to enrol; see docs/security.md. Wrong codes are throttled by django-otp (exponential back-off).
"""

from django import forms
from django.contrib.auth.forms import AuthenticationForm
from django_otp import devices_for_user, user_has_device
from django_otp.forms import OTPAuthenticationFormMixin


class LoginForm(OTPAuthenticationFormMixin, AuthenticationForm):
    """Username and password, plus the authenticator code for users who have enrolled a device."""

    otp_device = forms.CharField(required=False, widget=forms.HiddenInput)
    otp_challenge = forms.CharField(required=False, widget=forms.HiddenInput)
    otp_token = forms.CharField(
        required=False,
        label="Authenticator code",
        help_text="Only if you have set up an authenticator app for your account.",
        max_length=16,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
    )

    otp_error_messages = {
        **OTPAuthenticationFormMixin.otp_error_messages,
        "token_required": "Enter the code from your authenticator app.",
        "invalid_token": "That authenticator code is not right (or was already used). Try the next one.",
        "device_required": "Enter the code from your authenticator app.",
    }

    def _chosen_device(self, user):
        """The device picked in the form, else the user's only confirmed device (the usual case)."""
        device = super()._chosen_device(user)
        if device is None:
            devices = list(devices_for_user(user, confirmed=True, for_verify=True))
            if len(devices) == 1:
                device = devices[0]
        return device

    def clean(self) -> dict:
        cleaned_data = super().clean()
        user = self.get_user()
        if user is not None and user_has_device(user):
            self.clean_otp(user)
        return cleaned_data
