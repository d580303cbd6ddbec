from django.apps import AppConfig


class SessionsAppConfig(AppConfig):
    name = "sessions_app"
    label = "sessions_app"
    verbose_name = "Workspace sessions"

    def ready(self) -> None:
        from accounts.signals import account_disabled
        from sessions_app import receivers
        from workspaces.signals import workspaces_removing

        account_disabled.connect(receivers.account_sessions_end)
        workspaces_removing.connect(receivers.workspace_sessions_end)
