"""The reaper: ends expired sessions and reconciles container desktops with their engines
(sessions_app), and prunes spent desktop tickets (vnc_proxy). It lives on the roof because it
works on both floors."""

import logging
import time

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, close_old_connections

from sessions_app.services import sessions_reap, sessions_reconcile
from vnc_proxy.services import tickets_prune

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = (
        "End sessions idle longer than WORKGATE_SESSION_IDLE_TIMEOUT or older than "
        "WORKGATE_SESSION_MAX_AGE (audited as session_expired); end sessions whose container "
        "exited or is gone (session_lost) and remove containers no live session owns "
        "(container_removed); prune spent desktop tickets."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--loop",
            type=int,
            metavar="SECONDS",
            help="Keep running, reaping every SECONDS seconds (otherwise run once).",
        )

    def handle(self, *args, loop=None, **options):
        if loop is not None and loop < 1:
            raise CommandError("--loop needs a number of seconds of at least 1")
        while True:
            try:
                ended = sessions_reap()
                lost, removed = sessions_reconcile()
                pruned = tickets_prune()
            except DatabaseError:
                if loop is None:
                    raise
                # A database restart must not end the loop: try again next round.
                logger.exception("reaping failed; retrying in %s s", loop)
            else:
                self.stdout.write(
                    f"reaped {ended} session(s), ended {lost} whose container went, removed "
                    f"{removed} orphan container(s), pruned {pruned} ticket(s)"
                )
            if loop is None:
                return
            try:
                time.sleep(loop)
            except KeyboardInterrupt:
                return
            # A long-running loop must not keep a connection the database has dropped.
            close_old_connections()
