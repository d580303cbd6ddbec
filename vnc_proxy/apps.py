from django.apps import AppConfig


class VncProxyConfig(AppConfig):
    name = "vnc_proxy"
    verbose_name = "Desktop relay"

    def ready(self) -> None:
        from vnc_proxy import access_log

        access_log.install()
