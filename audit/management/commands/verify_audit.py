from django.core.management.base import BaseCommand, CommandError

from audit.models import AuditEntry
from audit.selectors import audit_chain_first_break


class Command(BaseCommand):
    help = "Verify the audit log's hash chain; exits non-zero naming the first broken entry."

    def handle(self, *args, **options):
        broken = audit_chain_first_break()
        if broken is not None:
            raise CommandError(f"audit chain broken at entry {broken.entry_id}: {broken.reason}")
        count = AuditEntry.objects.count()
        self.stdout.write(self.style.SUCCESS(f"audit chain intact: {count} entries verified"))
