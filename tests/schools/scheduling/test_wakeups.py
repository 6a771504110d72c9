"""Wake-ups: one message per slot, whoever asks."""

from datetime import timedelta

import pytest

from schools.scheduling import wakeups
from tests.helpers import in_seconds

pytestmark = pytest.mark.django_db


def test_one_wake_up_per_slot(monkeypatch):
    sent = []

    class Signature:
        def apply_async(self, eta=None, **options):
            sent.append(eta)

    monkeypatch.setattr(wakeups, "signature", lambda name: Signature())
    start = in_seconds(10).replace(microsecond=0)
    wakeups.wake_at([start + timedelta(milliseconds=ms) for ms in (10, 20, 90, 150, 160)])
    wakeups.wake_at([start + timedelta(milliseconds=30)])  # another writer, same slot
    assert sent == [start + timedelta(milliseconds=100), start + timedelta(milliseconds=200)]
