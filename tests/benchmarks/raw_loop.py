"""The floor of an ordered push: one process that locks the head row, POSTs it, marks it done and commits.

`python -m tests.benchmarks.raw_loop <count>` pushes the lane's first `count` pending
entries with the project's HTTP client (keep-alive) and the ORM, nothing else: no broker,
no lease, no attempt rows. Prints the seconds it took.
"""

import os
import sys
import time

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


def main(count: int) -> float:
    import django

    django.setup()
    from django.db import transaction
    from django.utils import timezone

    from sync.client import get_client
    from sync.models import DEFAULT_LANE, EntryStatus, OperationLog

    client = get_client()
    head = OperationLog.objects.select_for_update().filter(lane_id=DEFAULT_LANE, status=EntryStatus.PENDING)
    started = time.monotonic()
    for _ in range(count):
        with transaction.atomic():
            entry = head.order_by("sequence").first()
            if entry is None:
                break
            if not client.push(entry).ok:
                raise RuntimeError(f"the external API refused entry {entry.sequence}")
            OperationLog.objects.filter(pk=entry.pk).update(status=EntryStatus.SUCCEEDED, pushed_at=timezone.now())
    return time.monotonic() - started


if __name__ == "__main__":
    print(main(int(sys.argv[1])))  # noqa: T201
