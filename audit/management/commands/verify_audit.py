from django.core.management.base import BaseCommand, CommandError

from audit.models import AuditEntry
from audit.selectors import audit_chain_breaks

IDS_NAMED = 20  # in the closing message; every break has its own line above it


class Command(BaseCommand):
    help = (
        "Verify the audit log's hash chain: names every broken entry and why, one a line, and "
        "exits non-zero if there is any."
    )

    def handle(self, *args, **options):
        broken: list[int] = []
        count = 0
        for brk in audit_chain_breaks():
            count += 1
            if len(broken) < IDS_NAMED:
                broken.append(brk.entry_id)
            self.stderr.write(f"broken entry {brk.entry_id}: {brk.reason}")
        if count:
            ids = ", ".join(str(entry_id) for entry_id in broken)
            more = f" and {count - len(broken)} more" if count > len(broken) else ""
            entries = "entry" if count == 1 else "entries"
            raise CommandError(f"audit chain broken at {count} {entries}: {ids}{more}")
        count = AuditEntry.objects.count()
        self.stdout.write(self.style.SUCCESS(f"audit chain intact: {count} entries verified"))
