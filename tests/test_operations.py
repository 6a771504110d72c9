"""Operating the sync engine: periodic jobs, retention, health, status API, dashboard, metrics."""

from datetime import timedelta

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from sync import health, metrics, retention
from sync.client import PushResult
from sync.models import EntryStatus, OperationAttempt, OperationLog, Outcome, SyncLane
from tests.factories import SchoolFactory, UserFactory, bulk_entries
from tests.simulated import running_simulator

pytestmark = pytest.mark.django_db


def age(entries, days: float) -> None:
    OperationLog.objects.filter(pk__in=[e.pk for e in entries]).update(updated_at=timezone.now() - timedelta(days=days))


# --- Periodic jobs --------------------------------------------------------------------


def test_periodic_jobs_are_in_the_database_with_expiry():
    jobs = {job.task: job for job in PeriodicTask.objects.filter(task__startswith="sync.")}
    assert set(jobs) == {"sync.sweep", "sync.purge", "sync.refresh_health"}
    assert (jobs["sync.sweep"].interval.every, jobs["sync.sweep"].interval.period) == (15, "seconds")
    assert jobs["sync.sweep"].expire_seconds == 15
    assert (jobs["sync.refresh_health"].interval.every, jobs["sync.refresh_health"].expire_seconds) == (60, 60)
    assert (jobs["sync.purge"].crontab.hour, jobs["sync.purge"].crontab.minute) == ("3", "30")
    assert all(job.enabled for job in jobs.values())


# --- Retention ----------------------------------------------------------------------


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


# --- Health -------------------------------------------------------------------------


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


class BrokenCache:
    def get(self, *args, **kwargs):
        raise ConnectionError("cache is down")

    set = get


@pytest.fixture
def broken_cache(monkeypatch):
    monkeypatch.setattr(health, "cache", BrokenCache())
    monkeypatch.setattr(metrics, "cache", BrokenCache())


def test_a_broken_cache_breaks_no_page(broken_cache, reader_client, client, settings):
    settings.METRICS_TOKEN = "scrape-me"
    bulk_entries(3)
    status = reader_client.get("/api/sync/status/")
    assert status.status_code == 200
    assert status.json()["external"]["stale"] is True
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    assert client.get("/admin/sync/operationlog/dashboard/").status_code == 200
    assert client.get("/metrics").status_code == 200


# --- EntryStatus API and dashboard -------------------------------------------------------


def test_status_api_reports_counts_lag_progress_and_health(reader_client):
    sent = bulk_entries(3, EntryStatus.SUCCEEDED, pushed_at=timezone.now())
    bulk_entries(1, EntryStatus.FAILED, last_error="HTTP 400: bad", attempt_count=1)
    waiting = bulk_entries(2)
    OperationLog.objects.filter(pk=waiting[0].pk).update(created_at=timezone.now() - timedelta(minutes=5))
    SyncLane.objects.filter(pk="global").update(last_pushed_sequence=sent[-1].sequence, last_pushed_at=timezone.now())

    body = reader_client.get("/api/sync/status/").json()

    assert body["counts"] == {"pending": 2, "in_progress": 0, "succeeded": 3, "failed": 1, "cancelled": 0}
    assert body["last_pushed_sequence"] == sent[-1].sequence
    assert body["pushes_last_hour"] == 3
    assert body["external"]["stale"] is True
    [lane] = body["lanes"]
    assert lane["blocked_by"]["last_error"] == "HTTP 400: bad"
    assert body["oldest_pending_age_seconds"] > 0  # the failed head's age (the lane waits on it)


def test_status_api_needs_a_signed_in_user(anon_client):
    assert anon_client.get("/api/sync/status/").status_code == 401


@pytest.mark.parametrize("entries", [0, 5, 3000])
def test_status_api_and_dashboard_use_a_bounded_number_of_queries(reader_client, client, entries):
    bulk_entries(entries // 3, EntryStatus.SUCCEEDED, pushed_at=timezone.now() - timedelta(hours=2))
    bulk_entries(entries // 3, EntryStatus.CANCELLED)
    bulk_entries(entries - 2 * (entries // 3))
    staff = UserFactory(is_staff=True, is_superuser=True)
    client.force_login(staff)

    with CaptureQueriesContext(connection) as api_queries:
        assert reader_client.get("/api/sync/status/").status_code == 200
    with CaptureQueriesContext(connection) as page_queries:
        page = client.get("/admin/sync/operationlog/dashboard/")
    assert page.status_code == 200
    assert len(api_queries) <= 5
    assert len(page_queries) <= 10
    assert f'>{entries - 2 * (entries // 3)}</div><div class="label">Pending' in page.content.decode()


def test_dashboard_shows_the_blocked_lane_and_its_buttons_work(client):
    SchoolFactory()
    head = OperationLog.objects.get()
    OperationLog.objects.filter(pk=head.pk).update(status=EntryStatus.FAILED, last_error="HTTP 422: key reused")
    client.force_login(UserFactory(is_staff=True, is_superuser=True))

    page = client.get("/admin/sync/operationlog/dashboard/").content.decode()
    assert "HTTP 422: key reused" in page
    assert f"/admin/sync/operationlog/dashboard/{head.pk}/retry/" in page

    response = client.post(f"/admin/sync/operationlog/dashboard/{head.pk}/retry/")
    assert response.status_code == 302
    head.refresh_from_db()
    assert head.status == EntryStatus.PENDING
    assert "None: every lane is moving." in client.get("/admin/sync/operationlog/dashboard/").content.decode()


def test_dashboard_actions_need_their_permission(client):
    SchoolFactory()
    head = OperationLog.objects.get()
    OperationLog.objects.filter(pk=head.pk).update(status=EntryStatus.FAILED)
    client.force_login(UserFactory(is_staff=True, permissions=["sync.view_operationlog"]))
    page = client.get("/admin/sync/operationlog/dashboard/")
    assert page.status_code == 200
    assert "/retry/" not in page.content.decode()
    assert client.post(f"/admin/sync/operationlog/dashboard/{head.pk}/cancel/").status_code == 403
    assert OperationLog.objects.get().status == EntryStatus.FAILED


def test_dashboard_needs_view_permission(client):
    client.force_login(UserFactory(is_staff=True))
    assert client.get("/admin/sync/operationlog/dashboard/").status_code == 403


def test_dashboard_chart_has_a_day_of_hourly_points(client):
    bulk_entries(4, EntryStatus.SUCCEEDED, pushed_at=timezone.now() - timedelta(minutes=30))
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    page = client.get("/admin/sync/operationlog/dashboard/")
    chart = page.context["chart"]
    assert len(chart["bars"]) == 24
    assert chart["max_pushes"] == 4
    assert page.content.decode().count('<rect class="bar"') == 24


# --- Metrics ------------------------------------------------------------------------


def test_metrics_refuse_anonymous_and_non_staff_users(client, settings):
    settings.METRICS_TOKEN = "scrape-me"
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    client.force_login(UserFactory())
    assert client.get("/metrics").status_code == 401


def test_metrics_are_refused_to_token_holders_when_no_token_is_configured(client, settings):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 401


def test_metrics_expose_the_documented_series(client, settings):
    settings.METRICS_TOKEN = "scrape-me"
    bulk_entries(2)
    bulk_entries(1, EntryStatus.SUCCEEDED)
    metrics.record_attempts([PushResult(Outcome.SUCCESS, duration=0.2)])
    metrics.record_attempts([PushResult(Outcome.TRANSIENT, duration=3.0)])

    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-me")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    text = response.content.decode()
    for line in (
        'sync_entries{status="pending"} 2.0',
        'sync_entries{status="succeeded"} 1.0',
        'sync_lag_seconds{lane="global"}',
        'sync_push_attempts_total{outcome="success"} 1.0',
        'sync_push_attempts_total{outcome="transient"} 1.0',
        'sync_push_duration_seconds_bucket{le="0.25"} 1.0',
        'sync_push_duration_seconds_bucket{le="5.0"} 2.0',
        'sync_push_duration_seconds_bucket{le="+Inf"} 2.0',
        "sync_push_duration_seconds_count 2.0",
        "sync_push_duration_seconds_sum 3.2",
        "sync_external_up NaN",
        "sync_external_latency_seconds",
    ):
        assert line in text, line


def test_metrics_for_staff_sessions(client):
    client.force_login(UserFactory(is_staff=True))
    assert client.get("/metrics").status_code == 200
