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

    count = entries_resend(from_sequence=entries[1].sequence, to_sequence=entries[3].sequence)

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
    call_command("sync_resend", "--from-sequence", str(entries[1].sequence), stdout=out)
    assert "Queued 2 entries" in out.getvalue()
    assert list(OperationLog.objects.order_by("sequence").values_list("status", flat=True)) == [
        EntryStatus.SUCCEEDED,
        EntryStatus.PENDING,
        EntryStatus.PENDING,
    ]
    with pytest.raises(CommandError, match="no lane"):
        call_command("sync_resend", "--from-sequence", "1", "--lane", "nope")
    with pytest.raises(CommandError, match="must not be below"):
        call_command("sync_resend", "--from-sequence", "5", "--to-sequence", "2")
