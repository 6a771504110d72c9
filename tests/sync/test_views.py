"""The sync dashboard and the Prometheus endpoint."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from sync import health, metrics
from sync.client import PushResult
from sync.models import EntryStatus, OperationLog, Outcome
from tests.factories import SchoolFactory, UserFactory
from tests.helpers import bulk_entries

pytestmark = pytest.mark.django_db


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
    assert len(api_queries) <= 8  # 6, and the user's permissions (2)
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
    client.force_login(UserFactory(is_staff=True, permissions=["sync.view_operationlog", "schools.access_all_schools"]))
    assert client.get("/metrics").status_code == 200
