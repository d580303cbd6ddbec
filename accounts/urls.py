from django.urls import path

from accounts import apis

urlpatterns = [
    path("signin", apis.SignInApi.as_view(), name="auth-signin"),
    path("refresh", apis.RefreshApi.as_view(), name="auth-refresh"),
    path(
        "signout-everywhere",
        apis.SignOutEverywhereApi.as_view(),
        name="auth-signout-everywhere",
    ),
    path("me", apis.MeApi.as_view(), name="auth-me"),
    path("mfa/setup", apis.MfaSetupApi.as_view(), name="auth-mfa-setup"),
    path("mfa/verify", apis.MfaVerifyApi.as_view(), name="auth-mfa-verify"),
]
