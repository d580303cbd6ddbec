import secrets

from django.core.management.base import BaseCommand

from accounts.models import User

DEMO_EMAIL = "admin@workgate.local"


class Command(BaseCommand):
    help = "Create the demo administrator on first run and print its generated password once."

    def handle(self, *args, **options):
        if User.objects.filter(is_superuser=True).exists():
            return
        password = secrets.token_urlsafe(12)
        User.objects.create_superuser(email=DEMO_EMAIL, password=password)
        self.stdout.write(
            self.style.SUCCESS(
                "Created the demo administrator (shown once; change it in /admin/):\n"
                f"  email:    {DEMO_EMAIL}\n  password: {password}"
            )
        )
