from django.apps import AppConfig


class AppProxyConfig(AppConfig):
    name = "app_proxy"
    verbose_name = "Web apps through the gateway"

    def ready(self) -> None:
        from accounts.signals import signed_out_everywhere
        from app_proxy import receivers
        from sessions_app.signals import session_ended

        signed_out_everywhere.connect(receivers.account_app_access_void)
        session_ended.connect(receivers.session_grants_end)
