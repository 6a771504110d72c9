"""REST representation of OperationLog entries."""

from typing import TYPE_CHECKING, Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from sync.models import OperationLog

if TYPE_CHECKING:
    from django.contrib.auth.models import User


class SlotSerializer(serializers.Serializer):
    lane = serializers.CharField()
    sequence = serializers.IntegerField()


class OperationLogSerializer(serializers.ModelSerializer):
    lane = serializers.CharField(source="lane_id", read_only=True)
    slots = serializers.SerializerMethodField(help_text="Every slot the entry holds, its own lane first.")
    actor: "serializers.SlugRelatedField[User]" = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True, help_text="Who made the change."
    )
    cancelled_by: "serializers.SlugRelatedField[User]" = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True, help_text="Who cancelled the entry."
    )
    retried_by: "serializers.SlugRelatedField[User]" = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True, help_text="Who last made the entry due again by hand."
    )
    attempts = serializers.IntegerField(source="attempt_count", read_only=True)
    school = serializers.IntegerField(
        source="school_id", read_only=True, allow_null=True, help_text="The id of the record's school."
    )
    other_school = serializers.IntegerField(
        source="other_school_id", read_only=True, allow_null=True, help_text="For a move: the school it left."
    )

    class Meta:
        model = OperationLog
        fields = [
            "id",
            "lane",
            "sequence",
            "slots",
            "idempotency_key",
            "operation",
            "resource",
            "object_id",
            "school",
            "other_school",
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
            "retried_by",
            "retried_at",
            "resent_by",
            "resent_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    @extend_schema_field(SlotSerializer(many=True))
    def get_slots(self, entry: OperationLog) -> list[dict[str, Any]]:
        return [{"lane": lane, "sequence": sequence} for lane, sequence in entry.slots()]


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
    pending = serializers.IntegerField(
        help_text="Entries waiting to be sent, with other lanes' entries holding a slot."
    )
    failed = serializers.IntegerField()
    next_sequence = serializers.IntegerField()
    last_pushed_sequence = serializers.IntegerField(allow_null=True)
    last_pushed_at = serializers.DateTimeField(allow_null=True)
    oldest_pending_age_seconds = serializers.FloatField(
        allow_null=True, help_text="Age of the lane's oldest entry not yet delivered."
    )
    paused = serializers.BooleanField()
    lease_active = serializers.BooleanField(help_text="A chain is running: it holds the lane's lease.")
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
