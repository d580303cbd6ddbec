from django.apps import AppConfig


class VncProxyConfig(AppConfig):
    name = "vnc_proxy"
    verbose_name = "Desktop relay"
