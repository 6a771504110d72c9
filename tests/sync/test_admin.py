"""The operation log's admin: read-only rows, retry and cancel actions."""

import pytest

from sync import dispatcher, wakeup
from sync.models import EntryStatus, OperationLog
from tests.factories import SchoolFactory, UserFactory
from tests.helpers import entry_with_status, running_simulator, school_entries

pytestmark = pytest.mark.django_db


def test_operation_log_admin_is_read_only_and_filterable(admin_client):
    school = SchoolFactory()
    entry = OperationLog.objects.get(resource="schools", object_id=school.pk)
    assert (
        admin_client.get("/admin/sync/operationlog/?status__exact=pending&resource__exact=schools").status_code == 200
    )
    detail = admin_client.get(f"/admin/sync/operationlog/{entry.pk}/change/")
    assert detail.status_code == 200
    assert str(entry.idempotency_key) in detail.content.decode()
    assert admin_client.get("/admin/sync/operationlog/add/").status_code == 403
    assert admin_client.post(f"/admin/sync/operationlog/{entry.pk}/delete/", {"post": "yes"}).status_code == 403


def test_admin_actions_retry_and_cancel(client, superuser):
    client.force_login(superuser)
    failed = entry_with_status(EntryStatus.FAILED)
    sent = entry_with_status(EntryStatus.SUCCEEDED)

    response = client.post(
        "/admin/sync/operationlog/", {"action": "retry_entries", "_selected_action": [failed.pk, sent.pk]}, follow=True
    )
    assert response.status_code == 200
    failed.refresh_from_db()
    assert failed.status == EntryStatus.PENDING
    page = response.content.decode()
    assert "1 entries retried." in page
    assert f"#{sent.sequence}: Only a failed entry" in page

    client.post("/admin/sync/operationlog/", {"action": "cancel_entries", "_selected_action": [failed.pk]})
    failed.refresh_from_db()
    assert failed.status == EntryStatus.CANCELLED


def test_admin_actions_are_hidden_without_permission(client):
    staff = UserFactory(is_staff=True, permissions=["sync.view_operationlog"])
    client.force_login(staff)
    entry_with_status(EntryStatus.FAILED)
    page = client.get("/admin/sync/operationlog/").content.decode()
    assert "retry_entries" not in page
    assert "cancel_entries" not in page


@pytest.mark.django_db(transaction=True)
def test_a_bulk_cancel_is_one_decision_so_nothing_it_selected_is_sent(client, monkeypatch, settings):
    # A fast worker, in process: every kick dispatches the lane at once. Cancelling the
    # failed head first, on its own, would let it send the next selected entry.
    superuser = UserFactory(is_staff=True, is_superuser=True)
    client.force_login(superuser)
    with running_simulator() as (simulator, url):
        settings.SYNC_API_URL = url
        monkeypatch.setattr(wakeup, "kick", lambda lane: None)
        head, second, third = school_entries(3)
        OperationLog.objects.filter(pk=head.pk).update(status=EntryStatus.FAILED, last_error="HTTP 400: refused")
        monkeypatch.setattr(wakeup, "kick", dispatcher.dispatch_lane)

        client.post(
            "/admin/sync/operationlog/",
            {"action": "cancel_entries", "_selected_action": [head.pk, second.pk, third.pk]},
        )

        assert simulator.applied == []
        assert set(OperationLog.objects.values_list("status", flat=True)) == {EntryStatus.CANCELLED}


def test_cancelling_what_may_have_been_applied_asks_first_and_records_who_and_when(client, superuser):
    client.force_login(superuser)
    timed_out = entry_with_status(EntryStatus.PENDING, maybe_applied=True, last_error="timed out after 30s")
    never_sent = entry_with_status(EntryStatus.PENDING)
    selected = {"action": "cancel_entries", "_selected_action": [timed_out.pk, never_sent.pk]}

    page = client.post("/admin/sync/operationlog/", selected)
    assert page.status_code == 200
    assert "may already have been applied" in page.content.decode()
    assert "timed out after 30s" in page.content.decode()
    assert set(OperationLog.objects.values_list("status", flat=True)) == {EntryStatus.PENDING}  # nothing yet

    client.post("/admin/sync/operationlog/", {**selected, "confirm": "yes"})
    for entry in (timed_out, never_sent):
        entry.refresh_from_db()
        assert (entry.status, entry.cancelled_by) == (EntryStatus.CANCELLED, superuser)
        assert entry.cancelled_at is not None
