from rest_framework import serializers


class SignInInput(serializers.Serializer):
    email = serializers.CharField(max_length=254)
    password = serializers.CharField(max_length=1024, trim_whitespace=False)
    otp = serializers.CharField(max_length=12, required=False, allow_blank=True)


class MfaSetupInput(serializers.Serializer):
    password = serializers.CharField(
        max_length=1024, trim_whitespace=False, help_text="The account's password, again."
    )


class ProfileOutput(serializers.Serializer):
    id = serializers.IntegerField()
    email = serializers.EmailField()
    first_name = serializers.CharField()
    last_name = serializers.CharField()
    is_admin = serializers.BooleanField(
        help_text="The administrator role (staff); what it may do is `admin_permissions`."
    )
    admin_permissions = serializers.ListField(
        child=serializers.CharField(),
        help_text=(
            "The admin API's permissions this account holds (app_label.codename); "
            "empty for anyone but an administrator."
        ),
    )
    mfa_enabled = serializers.BooleanField()


class SignInOutput(serializers.Serializer):
    success = serializers.BooleanField()
    token = serializers.CharField(help_text="Access token (JWT); send as x-access-token.")
    refresh = serializers.CharField()
    expiresInSec = serializers.IntegerField()
    profile = ProfileOutput()


class RefreshInput(serializers.Serializer):
    refresh = serializers.CharField()


class RefreshOutput(serializers.Serializer):
    success = serializers.BooleanField()
    token = serializers.CharField()
    expiresInSec = serializers.IntegerField()


class SignOutOutput(serializers.Serializer):
    success = serializers.BooleanField()
    message = serializers.CharField()


class MeOutput(serializers.Serializer):
    success = serializers.BooleanField()
    profile = ProfileOutput()


class MfaSetupOutput(serializers.Serializer):
    success = serializers.BooleanField()
    secret = serializers.CharField()
    otpauth_uri = serializers.CharField()


class MfaVerifyInput(serializers.Serializer):
    otp = serializers.CharField(max_length=12)


class MfaVerifyOutput(serializers.Serializer):
    success = serializers.BooleanField()
    mfa_enabled = serializers.BooleanField()
