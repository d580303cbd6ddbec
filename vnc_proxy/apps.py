from django.apps import AppConfig


class VncProxyConfig(AppConfig):
    name = "vnc_proxy"
    verbose_name = "Desktop relay"

    def ready(self) -> None:
        from accounts.signals import signed_out_everywhere
        from vnc_proxy import access_log, receivers

        access_log.install()
        signed_out_everywhere.connect(receivers.account_tickets_void)
