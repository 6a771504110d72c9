"""Deletes closed entries, and their attempts, once they are older than the retention period."""

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from sync.models import EntryStatus, OperationAttempt, OperationLog

logger = logging.getLogger(__name__)

PURGE_BATCH_SIZE = 1000
"""Rows per delete transaction, so the purge never holds long locks."""

PURGEABLE_STATUSES = (EntryStatus.SUCCEEDED, EntryStatus.CANCELLED)


def purge_closed_entries(*, now: datetime | None = None, batch_size: int = PURGE_BATCH_SIZE) -> int:
    """Delete succeeded and cancelled entries closed more than SYNC_RETENTION_DAYS ago.

    Each batch locks the rows it deletes, re-checking under the lock that they are still
    closed and old: an entry an operator resends meanwhile is either deleted before the
    resend reaches it (which then finds nothing) or left alone, never lost once pending.
    Rows another transaction holds are skipped until the next run.
    """
    cutoff = (now or timezone.now()) - timedelta(days=settings.SYNC_RETENTION_DAYS)
    expired = OperationLog.objects.filter(status__in=PURGEABLE_STATUSES, updated_at__lt=cutoff)
    deleted = 0
    while True:
        with transaction.atomic():
            ids = list(
                expired.select_for_update(skip_locked=True)
                .order_by("updated_at")
                .values_list("pk", flat=True)[:batch_size]
            )
            if not ids:
                break
            OperationAttempt.objects.filter(entry_id__in=ids)._raw_delete(OperationAttempt.objects.db)
            OperationLog.objects.filter(pk__in=ids)._raw_delete(OperationLog.objects.db)
        deleted += len(ids)
    logger.info("purge deleted=%s closed before %s", deleted, cutoff.isoformat())
    return deleted
