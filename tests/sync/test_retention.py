"""The retention purge: only closed entries older than the retention period go."""

import threading
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from sync import retention
from sync.models import EntryStatus, OperationAttempt, OperationLog, Outcome
from sync.services import entries_resend
from tests.helpers import bulk_entries, wait_until

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


@pytest.mark.django_db(transaction=True)
def test_an_entry_resent_while_the_purge_runs_is_never_lost(settings):
    """An operator resends an old entry just as the purge is about to delete it."""
    if connection.vendor != "postgresql":
        pytest.skip("needs two connections and row locks (PostgreSQL)")
    settings.SYNC_RETENTION_DAYS = 30
    [entry] = bulk_entries(1, EntryStatus.SUCCEEDED)
    age([entry], days=31)
    resent: list[int] = []

    def resend() -> None:
        try:
            resent.append(entries_resend(from_sequence=entry.sequence, to_sequence=entry.sequence, requested_by="ops"))
        finally:
            connection.close()  # this thread's own connection

    operator = threading.Thread(target=resend)

    def resend_just_before_the_first_delete(execute, sql, params, many, context):
        if sql.lstrip().upper().startswith("DELETE") and operator.ident is None:
            operator.start()
            # It commits at once, or waits behind the purge's row locks: either way, go on then.
            wait_until(
                lambda: not operator.is_alive() or _a_backend_waits_for_a_lock(),
                timeout=10,
                message="the resend to commit or to wait for a lock",
            )
        return execute(sql, params, many, context)

    with connection.execute_wrapper(resend_just_before_the_first_delete):
        retention.purge_closed_entries()
    operator.join(timeout=10)

    survivor = OperationLog.objects.filter(pk=entry.pk).first()
    assert resent in ([0], [1])
    if resent == [1]:  # the resend won: the entry is pending again and must not be deleted
        assert survivor is not None
        assert survivor.status == EntryStatus.PENDING
    else:  # the purge won: the resend found nothing left to reopen
        assert survivor is None


def _a_backend_waits_for_a_lock() -> bool:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")  # inside a transaction the view is cached
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
        return cursor.fetchone()[0] > 0
