"""Fixtures for the scheduled changes' tests."""

import pytest

from schools.scheduling import wakeups


@pytest.fixture
def asked_wake_ups(monkeypatch):
    """Wake-up times the code asked for (publishing them is the broker's job)."""
    times = []
    monkeypatch.setattr(wakeups, "wake_at", lambda moments: times.extend(moments))
    return times
