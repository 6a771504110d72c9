"""The retention purge: only closed entries older than the retention period go."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from sync import retention
from sync.models import EntryStatus, OperationAttempt, OperationLog, Outcome
from tests.helpers import bulk_entries

pytestmark = pytest.mark.django_db


def age(entries, days: float) -> None:
    OperationLog.objects.filter(pk__in=[e.pk for e in entries]).update(updated_at=timezone.now() - timedelta(days=days))


def test_purge_deletes_only_old_closed_entries_and_their_attempts(settings):
    settings.SYNC_RETENTION_DAYS = 30
    old_succeeded = bulk_entries(3, EntryStatus.SUCCEEDED)
    old_cancelled = bulk_entries(2, EntryStatus.CANCELLED)
    old_open = [
        bulk_entries(1, status)[0] for status in (EntryStatus.PENDING, EntryStatus.IN_PROGRESS, EntryStatus.FAILED)
    ]
    recent_succeeded = bulk_entries(2, EntryStatus.SUCCEEDED)
    age([*old_succeeded, *old_cancelled, *old_open], days=31)
    age(recent_succeeded, days=29)
    for entry in [*old_succeeded, *recent_succeeded]:
        OperationAttempt.objects.create(
            entry=entry, started_at=timezone.now(), duration_ms=5, outcome=Outcome.SUCCESS, status_code=201
        )

    with CaptureQueriesContext(connection) as queries:
        deleted = retention.purge_closed_entries(batch_size=2)

    assert deleted == 5
    remaining = set(OperationLog.objects.values_list("pk", flat=True))
    assert remaining == {e.pk for e in [*old_open, *recent_succeeded]}
    assert set(OperationAttempt.objects.values_list("entry_id", flat=True)) == {e.pk for e in recent_succeeded}
    log_deletes = [q for q in queries.captured_queries if q["sql"].startswith('DELETE FROM "sync_operationlog"')]
    assert len(log_deletes) == 3  # batches of 2, 2 and 1


def test_purge_with_nothing_to_do():
    bulk_entries(2, EntryStatus.SUCCEEDED)
    assert retention.purge_closed_entries() == 0
    assert OperationLog.objects.count() == 2
