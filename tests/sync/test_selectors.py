"""The engine's reads: which entries are due next."""

from datetime import timedelta

import pytest
from django.utils import timezone

from sync import selectors
from sync.models import DEFAULT_LANE, EntryStatus, OperationLog
from tests.helpers import school_entries

pytestmark = pytest.mark.django_db


def test_due_entries_stop_at_a_failed_or_waiting_entry():
    first, second, third = school_entries(3)
    now = timezone.now()
    assert selectors.due_entries(DEFAULT_LANE, now, limit=10) == [first.pk, second.pk, third.pk]
    assert selectors.due_entries(DEFAULT_LANE, now, limit=2) == [first.pk, second.pk]

    OperationLog.objects.filter(pk=second.pk).update(next_attempt_at=now + timedelta(seconds=30))
    assert selectors.due_entries(DEFAULT_LANE, now, limit=10) == [first.pk]

    OperationLog.objects.filter(pk=first.pk).update(status=EntryStatus.FAILED)
    assert selectors.due_entries(DEFAULT_LANE, now, limit=10) == []
