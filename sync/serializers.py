"""REST representation of OperationLog entries."""

from typing import TYPE_CHECKING

from rest_framework import serializers

from sync.models import OperationLog

if TYPE_CHECKING:
    from django.contrib.auth.models import User


class OperationLogSerializer(serializers.ModelSerializer):
    lane = serializers.CharField(source="lane_id", read_only=True)
    actor: "serializers.SlugRelatedField[User]" = serializers.SlugRelatedField(slug_field="username", read_only=True)
    cancelled_by: "serializers.SlugRelatedField[User]" = serializers.SlugRelatedField(
        slug_field="username", read_only=True
    )
    attempts = serializers.IntegerField(source="attempt_count", read_only=True)

    class Meta:
        model = OperationLog
        fields = [
            "id",
            "lane",
            "sequence",
            "idempotency_key",
            "operation",
            "resource",
            "object_id",
            "payload",
            "status",
            "attempts",
            "next_attempt_at",
            "last_error",
            "pushed_at",
            "maybe_applied",
            "actor",
            "cancelled_by",
            "cancelled_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class CancelSerializer(serializers.Serializer):
    confirm = serializers.BooleanField(
        default=False,
        help_text="Cancel even though the external system may already have applied the entry (maybe_applied).",
    )


class StatusCountsSerializer(serializers.Serializer):
    pending = serializers.IntegerField()
    in_progress = serializers.IntegerField()
    succeeded = serializers.IntegerField()
    failed = serializers.IntegerField()
    cancelled = serializers.IntegerField()


class ExternalHealthSerializer(serializers.Serializer):
    reachable = serializers.BooleanField(allow_null=True, help_text="Null until the first probe.")
    status_code = serializers.IntegerField(allow_null=True)
    latency_ms = serializers.FloatField(allow_null=True)
    error = serializers.CharField()
    checked_at = serializers.CharField(allow_null=True)
    age_seconds = serializers.FloatField(allow_null=True)
    stale = serializers.BooleanField(help_text="True when the probe is missing or older than three minutes.")


class BlockingEntrySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    sequence = serializers.IntegerField()
    operation = serializers.CharField()
    resource = serializers.CharField()
    object_id = serializers.IntegerField()
    attempts = serializers.IntegerField(source="attempt_count")
    last_error = serializers.CharField()


class LaneStatusSerializer(serializers.Serializer):
    name = serializers.CharField()
    next_sequence = serializers.IntegerField()
    last_pushed_sequence = serializers.IntegerField(allow_null=True)
    last_pushed_at = serializers.DateTimeField(allow_null=True)
    lease_active = serializers.BooleanField()
    oldest_open_age_seconds = serializers.FloatField(allow_null=True)
    blocked_by = BlockingEntrySerializer(allow_null=True, help_text="The failed entry the lane waits on.")


class SyncStatusSerializer(serializers.Serializer):
    counts = StatusCountsSerializer()
    last_pushed_sequence = serializers.IntegerField(allow_null=True)
    last_pushed_at = serializers.DateTimeField(allow_null=True)
    oldest_pending_age_seconds = serializers.FloatField(
        allow_null=True, help_text="Age of the oldest entry not yet delivered (the lag)."
    )
    pushes_last_hour = serializers.IntegerField()
    external = ExternalHealthSerializer()
    lanes = LaneStatusSerializer(many=True)
