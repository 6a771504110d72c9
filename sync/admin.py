"""Read-only admin views of the operation log and its lanes."""

import json

from django.contrib import admin
from django.utils.html import format_html

from sync.models import OperationLog, SyncLane


class ReadOnlyAdminMixin:
    """The outbox is written only by the recorder and the sync engine."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(OperationLog)
class OperationLogAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["sequence", "lane", "operation", "resource", "object_id", "status", "actor", "created_at"]
    list_filter = ["status", "resource", "operation", "lane"]
    list_select_related = ["actor"]
    search_fields = ["=idempotency_key", "=object_id"]
    date_hierarchy = "created_at"
    ordering = ["-lane", "-sequence"]
    show_full_result_count = False  # the log grows large; skip the extra COUNT(*)
    fields = [
        "lane",
        "sequence",
        "idempotency_key",
        "operation",
        "resource",
        "object_id",
        "status",
        "actor",
        "created_at",
        "updated_at",
        "payload_pretty",
    ]
    readonly_fields = fields

    @admin.display(description="payload")
    def payload_pretty(self, obj: OperationLog) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.payload, indent=2, ensure_ascii=False))


@admin.register(SyncLane)
class SyncLaneAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["name", "next_sequence"]
