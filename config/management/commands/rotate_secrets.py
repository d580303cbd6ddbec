from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from audit import services as audit
from core.crypto import secrets_not_under_first_key, secrets_rotate


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored secret with the first key of WORKGATE_ENCRYPTION_KEY "
        "(--check: only say whether any is still under another key; non-zero if one is)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--check", action="store_true", help="change nothing; report only")

    def handle(self, *args, check: bool = False, **options):
        if check:
            behind = secrets_not_under_first_key()
            if behind:
                listed = ", ".join(f"{column}: {count}" for column, count in behind.items())
                raise CommandError(
                    f"{sum(behind.values())} stored secrets are not under the first key "
                    f"({listed}); run rotate_secrets before removing the old key"
                )
            self.stdout.write(self.style.SUCCESS("every stored secret is under the first key"))
            return
        # Audited in the rotation's transaction: an entry only for a rotation that committed.
        with transaction.atomic():
            rotated = secrets_rotate()
            audit.record(action="secrets_rotated", details={"rotated": rotated})
        self.stdout.write(self.style.SUCCESS(f"{rotated} stored secrets re-encrypted"))
