"""REST representation of OperationLog entries."""

from rest_framework import serializers

from sync.models import OperationLog


class OperationLogSerializer(serializers.ModelSerializer):
    lane = serializers.CharField(source="lane_id", read_only=True)
    actor = serializers.SlugRelatedField(slug_field="username", read_only=True)

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
            "actor",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields
