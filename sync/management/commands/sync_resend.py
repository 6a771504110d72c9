"""Send entries to the external system again, in order, with their original idempotency keys."""

import getpass

from django.core.management.base import BaseCommand, CommandError

from sync.models import DEFAULT_LANE, SyncLane
from sync.services import entries_resend


class Command(BaseCommand):
    help = (
        "Queue succeeded and failed entries from a sequence on for delivery again. They keep their "
        "idempotency keys, so the external system applies a change it already has only once."
    )

    def add_arguments(self, parser):
        parser.add_argument("--from-sequence", type=int, required=True, help="first sequence to send again")
        parser.add_argument("--to-sequence", type=int, default=None, help="last sequence to send again")
        parser.add_argument("--lane", default=DEFAULT_LANE, help="the lane: global, or school-<id> with school lanes")
        parser.add_argument(
            "--by", default=None, help="who asks for the resend, for the record (default: the account running this)"
        )

    def handle(self, *args, from_sequence, to_sequence, lane, by, **options):
        if from_sequence < 1:
            raise CommandError("--from-sequence must be 1 or more.")
        if to_sequence is not None and to_sequence < from_sequence:
            raise CommandError("--to-sequence must not be below --from-sequence.")
        if not SyncLane.objects.filter(pk=lane).exists():
            raise CommandError(f"There is no lane {lane!r}.")
        requested_by = by or getpass.getuser()
        count = entries_resend(
            from_sequence=from_sequence, to_sequence=to_sequence, lane=lane, requested_by=requested_by
        )
        last = f" to {to_sequence}" if to_sequence is not None else " on"
        self.stdout.write(f"Queued {count} entries of lane {lane!r} from sequence {from_sequence}{last} to send again.")
