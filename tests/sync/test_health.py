"""The external system's health: probed by a job, read from the cache."""

from datetime import timedelta

import pytest
from django.core.cache import cache
from django.utils import timezone

from sync import health
from tests.helpers import running_simulator

pytestmark = pytest.mark.django_db


def test_health_probe_records_reachability_and_latency(settings):
    with running_simulator() as (_, url):
        settings.SYNC_API_URL = url
        result = health.refresh_health()
    assert result["reachable"] is True
    assert result["status_code"] == 200
    assert result["latency_ms"] >= 0
    cached = health.read_health()
    assert (cached["reachable"], cached["stale"]) == (True, False)


def test_an_unreachable_system_shows_as_unreachable(settings):
    settings.SYNC_API_URL = "http://127.0.0.1:9"
    result = health.refresh_health()
    assert result["reachable"] is False
    assert "ConnectError" in result["error"]
    assert health.read_health()["reachable"] is False


def test_a_health_job_that_stopped_running_shows_as_stale():
    assert health.read_health()["stale"] is True  # never ran
    cache.set(
        health.HEALTH_CACHE_KEY,
        {
            "reachable": True,
            "status_code": 200,
            "latency_ms": 3.0,
            "error": "",
            "checked_at": (timezone.now() - timedelta(minutes=10)).isoformat(),
        },
        timeout=None,
    )
    result = health.read_health()
    assert (result["reachable"], result["stale"]) == (True, True)
