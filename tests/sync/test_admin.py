"""The operation log's admin: read-only rows, retry and cancel actions."""

import pytest

from sync.models import EntryStatus, OperationLog
from tests.factories import SchoolFactory, UserFactory
from tests.helpers import entry_with_status

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
