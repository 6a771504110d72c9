"""Admin views of the operation log and lanes: read-only rows, their attempts, retry / cancel and pause / resume."""

import json

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.html import format_html

from schools import access
from sync import views
from sync.models import OperationAttempt, OperationLog, SyncLane
from sync.services import (
    CancelNeedsConfirmation,
    EntryStateError,
    entries_cancel,
    entry_retry,
    lane_pause,
    lane_resume,
)


class ReadOnlyAdminMixin:
    """The outbox is written only by the recorder, the dispatcher and the operator services."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class OperationAttemptInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = OperationAttempt
    fields = ["started_at", "duration_ms", "outcome", "status_code", "error"]
    readonly_fields = fields  # type: ignore[assignment]  # the stubs type fields as a list of field groups
    extra = 0


@admin.register(OperationLog)
class OperationLogAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "sequence",
        "lane",
        "operation",
        "resource",
        "object_id",
        "school_id",
        "status",
        "attempt_count",
        "next_attempt_at",
        "actor",
        "created_at",
    ]
    list_filter = ["status", "resource", "operation", ("lane", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["actor"]
    search_fields = ["=idempotency_key", "=object_id"]
    date_hierarchy = "created_at"
    ordering = ["-lane", "-sequence"]
    show_full_result_count = False  # the log grows large; skip the extra COUNT(*)
    actions = ["retry_entries", "cancel_entries"]
    inlines = [OperationAttemptInline]
    fields = [
        "lane",
        "sequence",
        "idempotency_key",
        "operation",
        "resource",
        "object_id",
        "school_id",
        "other_school_id",
        "status",
        "attempt_count",
        "next_attempt_at",
        "last_error",
        "pushed_at",
        "maybe_applied",
        "actor",
        "cancelled_by",
        "cancelled_at",
        "retried_by",
        "retried_at",
        "resent_by",
        "resent_at",
        "created_at",
        "updated_at",
        "payload_pretty",
    ]
    readonly_fields = fields  # type: ignore[assignment]  # the stubs type fields as a list of field groups

    @admin.display(description="payload")
    def payload_pretty(self, obj: OperationLog) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.payload, indent=2, ensure_ascii=False))

    def get_queryset(self, request):
        return access.scoped(super().get_queryset(request), request.user)

    def get_urls(self):
        dashboard = [
            path("dashboard/", self.admin_site.admin_view(self.dashboard_view), name="sync_dashboard"),
            path(
                "dashboard/<int:pk>/<str:action>/",
                self.admin_site.admin_view(views.dashboard_action),
                name="sync_dashboard_action",
            ),
        ]
        lanes = [
            path(
                "dashboard/lanes/<str:name>/<str:action>/",
                self.admin_site.admin_view(views.dashboard_lane_action),
                name="sync_dashboard_lane_action",
            ),
        ]
        return dashboard + lanes + super().get_urls()

    def dashboard_view(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied
        return views.dashboard(request, self.admin_site.each_context(request))

    def has_retry_permission(self, request):
        return request.user.has_perm("sync.retry_operationlog")

    def has_cancel_permission(self, request):
        return request.user.has_perm("sync.cancel_operationlog")

    @admin.action(description="Retry selected entries now", permissions=["retry"])
    def retry_entries(self, request, queryset):
        retried = 0
        for entry in queryset.order_by("lane", "sequence"):
            try:
                entry_retry(entry=entry, actor=request.user)
            except EntryStateError as exc:
                self.message_user(request, f"#{entry.sequence}: {exc}", messages.WARNING)
            else:
                retried += 1
        if retried:
            self.message_user(request, f"{retried} entries retried.", messages.SUCCESS)

    @admin.action(description="Cancel selected entries (they will not be sent again)", permissions=["cancel"])
    def cancel_entries(self, request, queryset):
        """All selected entries in one decision; those that may have been applied are confirmed first."""
        confirmed = request.POST.get("confirm") == "yes"
        try:
            result = entries_cancel(
                entry_ids=queryset.values_list("pk", flat=True), actor=request.user, confirmed=confirmed
            )
        except CancelNeedsConfirmation:
            context = {
                **self.admin_site.each_context(request),
                "title": "Cancel entries the external system may have applied?",
                "opts": self.model._meta,
                "entries": queryset.order_by("lane", "sequence"),
                "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
                "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            }
            return TemplateResponse(request, "admin/sync/operationlog/cancel_confirmation.html", context)
        for entry, reason in result.refused:
            self.message_user(request, f"#{entry.sequence}: {reason}", messages.WARNING)
        if result.cancelled:
            self.message_user(request, f"{len(result.cancelled)} entries cancelled.", messages.SUCCESS)
        return None


@admin.register(SyncLane)
class SyncLaneAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "name",
        "paused",
        "next_sequence",
        "last_pushed_sequence",
        "last_pushed_at",
        "lease_holder",
        "lease_expires_at",
        "paused_changed_by",
        "paused_changed_at",
    ]
    list_filter = ["paused"]
    search_fields = ["name"]
    actions = ["pause_lanes", "resume_lanes"]

    def get_queryset(self, request):
        return access.scoped(super().get_queryset(request), request.user)

    def has_pause_permission(self, request):
        return request.user.has_perm("sync.pause_synclane")

    @admin.action(description="Pause selected lanes (after the push in flight)", permissions=["pause"])
    def pause_lanes(self, request, queryset):
        for lane in queryset:
            lane_pause(lane=lane, actor=request.user)
        self.message_user(
            request, f"{queryset.count()} lanes paused; writes to them go on and queue.", messages.SUCCESS
        )

    @admin.action(description="Resume selected lanes", permissions=["pause"])
    def resume_lanes(self, request, queryset):
        for lane in queryset:
            lane_resume(lane=lane, actor=request.user)
        self.message_user(request, f"{queryset.count()} lanes resumed.", messages.SUCCESS)
