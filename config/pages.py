"""The server-rendered pages for people (the JSON API lives under /api/, see config/urls.py)."""

from django.urls import path

from accounts import views as accounts
from audit import views as audit
from sessions_app import views as sessions
from streaming import views as streaming

urlpatterns = [
    path("login", accounts.login_page, name="login"),
    path("logout", accounts.logout_page, name="logout"),
    path("account/mfa", accounts.mfa_page, name="account-mfa"),
    path("", sessions.catalog, name="catalog"),
    path(
        "workspaces/<str:workspace_id>/launch", sessions.workspace_launch, name="workspace-launch"
    ),
    path("workspaces/<str:workspace_id>/stop", sessions.workspace_stop, name="workspace-stop"),
    path("sessions", sessions.session_list_page, name="sessions"),
    path("sessions/<uuid:session_id>/stop", sessions.session_stop, name="session-stop"),
    path("viewer/<uuid:session_id>", sessions.viewer, name="viewer"),
    path("assistant", streaming.assistant, name="assistant"),
    path("audit", audit.audit_page, name="audit"),
]
