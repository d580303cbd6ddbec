from django.apps import AppConfig


class AppProxyConfig(AppConfig):
    name = "app_proxy"
    verbose_name = "Web apps through the gateway"
