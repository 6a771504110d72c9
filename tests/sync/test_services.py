"""Operator services: resending entries, and the command that does it."""

import io

import pytest
from django.core.management import CommandError, call_command

from sync.models import EntryStatus, OperationLog
from sync.services import entries_resend
from tests.helpers import entry_with_status

pytestmark = pytest.mark.django_db


def test_resend_reopens_sent_and_failed_entries_from_a_sequence():
    statuses = [
        EntryStatus.SUCCEEDED,
        EntryStatus.SUCCEEDED,
        EntryStatus.CANCELLED,
        EntryStatus.FAILED,
        EntryStatus.SUCCEEDED,
    ]
    entries = [entry_with_status(status) for status in statuses]
    keys = [e.idempotency_key for e in entries]

    count = entries_resend(from_sequence=entries[1].sequence, to_sequence=entries[3].sequence, requested_by="ops")

    assert count == 2
    after = list(OperationLog.objects.order_by("sequence"))
    assert [e.status for e in after] == [
        EntryStatus.SUCCEEDED,
        EntryStatus.PENDING,
        EntryStatus.CANCELLED,  # an operator's cancel stands
        EntryStatus.PENDING,
        EntryStatus.SUCCEEDED,
    ]
    assert [e.idempotency_key for e in after] == keys


def test_resend_command():
    entries = [entry_with_status(EntryStatus.SUCCEEDED) for _ in range(3)]
    out = io.StringIO()
    call_command("sync_resend", "--from-sequence", str(entries[1].sequence), "--by", "ada", stdout=out)
    assert "Queued 2 entries" in out.getvalue()
    resent = OperationLog.objects.get(pk=entries[2].pk)
    assert resent.resent_by == "ada"  # who asked, and when, stay on the entry
    assert resent.resent_at is not None
    assert list(OperationLog.objects.order_by("sequence").values_list("status", flat=True)) == [
        EntryStatus.SUCCEEDED,
        EntryStatus.PENDING,
        EntryStatus.PENDING,
    ]
    with pytest.raises(CommandError, match="no lane"):
        call_command("sync_resend", "--from-sequence", "1", "--lane", "nope")
    with pytest.raises(CommandError, match="must not be below"):
        call_command("sync_resend", "--from-sequence", "5", "--to-sequence", "2")


def test_a_retry_records_who_and_when(operator_client):
    entry = entry_with_status(EntryStatus.FAILED, last_error="HTTP 400")
    response = operator_client.post(f"/api/sync/operations/{entry.pk}/retry/")
    assert response.status_code == 200
    entry.refresh_from_db()
    assert entry.retried_by is not None
    assert entry.retried_at is not None
    assert response.json()["retried_by"] == entry.retried_by.username
