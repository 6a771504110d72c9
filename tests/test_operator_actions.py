"""Retry, cancel and resend: the API, the admin actions and the command."""

import io
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from sync.models import EntryStatus, OperationLog
from sync.services import CANCEL_NOT_ALLOWED, RETRY_NOT_ALLOWED, entries_resend
from tests.conftest import api_client_for
from tests.factories import SchoolFactory, UserFactory

pytestmark = pytest.mark.django_db


def entry_with_status(status, **fields):
    SchoolFactory()
    entry = OperationLog.objects.order_by("-sequence").first()
    OperationLog.objects.filter(pk=entry.pk).update(status=status, **fields)
    entry.refresh_from_db()
    return entry


@pytest.mark.parametrize("status", [EntryStatus.FAILED, EntryStatus.PENDING])
def test_retry_makes_the_entry_due_now(operator_client, status):
    entry = entry_with_status(status, next_attempt_at=timezone.now() + timedelta(minutes=5))
    response = operator_client.post(f"/api/sync/operations/{entry.pk}/retry/")
    assert response.status_code == 200
    assert (response.json()["status"], response.json()["next_attempt_at"]) == ("pending", None)


@pytest.mark.parametrize("status", [EntryStatus.SUCCEEDED, EntryStatus.CANCELLED, EntryStatus.IN_PROGRESS])
def test_retry_is_refused_for_other_statuses(operator_client, status):
    entry = entry_with_status(status)
    response = operator_client.post(f"/api/sync/operations/{entry.pk}/retry/")
    assert response.status_code == 409
    assert response.json()["detail"] == RETRY_NOT_ALLOWED.format(status=entry.get_status_display())
    entry.refresh_from_db()
    assert entry.status == status


@pytest.mark.parametrize("status", [EntryStatus.FAILED, EntryStatus.PENDING])
def test_cancel(operator_client, status):
    entry = entry_with_status(status)
    response = operator_client.post(f"/api/sync/operations/{entry.pk}/cancel/")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"


@pytest.mark.parametrize("status", [EntryStatus.SUCCEEDED, EntryStatus.IN_PROGRESS, EntryStatus.CANCELLED])
def test_cancel_is_refused_once_sent_or_sending(operator_client, status):
    entry = entry_with_status(status)
    response = operator_client.post(f"/api/sync/operations/{entry.pk}/cancel/")
    assert response.status_code == 409
    assert response.json()["detail"] == CANCEL_NOT_ALLOWED.format(status=entry.get_status_display())


def test_operator_actions_need_their_permissions(reader_client, editor_client, anon_client):
    entry = entry_with_status(EntryStatus.FAILED)
    for client, expected in ((anon_client, 401), (reader_client, 403), (editor_client, 403)):
        assert client.post(f"/api/sync/operations/{entry.pk}/retry/").status_code == expected
        assert client.post(f"/api/sync/operations/{entry.pk}/cancel/").status_code == expected
    entry.refresh_from_db()
    assert entry.status == EntryStatus.FAILED

    may_only_retry = api_client_for(UserFactory(permissions=["sync.retry_operationlog"]))
    assert may_only_retry.post(f"/api/sync/operations/{entry.pk}/cancel/").status_code == 403
    assert may_only_retry.post(f"/api/sync/operations/{entry.pk}/retry/").status_code == 200


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
