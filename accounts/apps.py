from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts"

    def ready(self):
        # Registers the OpenAPI description of the access-token authentication.
        import core.schema  # noqa: F401
