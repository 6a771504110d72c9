"""Fixtures for the sync engine's tests: the simulator, and what the code under test publishes."""

import pytest

from sync import wakeup
from tests.conftest import DISTRICT
from tests.factories import UserFactory
from tests.helpers import running_simulator


@pytest.fixture
def reader(db):
    """District staff who may read the whole operation log, and act on none of it."""
    return UserFactory(permissions=["sync.view_operationlog", DISTRICT])


@pytest.fixture
def simulator(settings):
    with running_simulator() as (sim, url):
        settings.SYNC_API_URL = url
        settings.SYNC_HTTP_TIMEOUT = 2
        yield sim


@pytest.fixture
def kicks(monkeypatch):
    """Lanes the code under test asked the dispatcher to wake up (publishing is the broker's job)."""
    kicked = []
    monkeypatch.setattr(wakeup, "kick", kicked.append)
    return kicked


@pytest.fixture
def published_dispatches(monkeypatch):
    """Dispatches published by the code under test, as (args, countdown)."""
    calls = []

    class Recorder:
        def __init__(self, name, args):
            self.name, self.args = name, args

        def apply_async(self, countdown=None, **options):
            calls.append((self.args, countdown))

    monkeypatch.setattr(wakeup, "signature", lambda name, args, **kw: Recorder(name, args))
    return calls
