"""The transactional outbox: one OperationLog row per committed change, in lane order."""

import uuid

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models

DEFAULT_LANE = "global"


class SyncLane(models.Model):
    """A stream of changes delivered strictly in sequence; its row is the sequence lock."""

    name = models.CharField(max_length=64, primary_key=True)
    # The sequence the next recorded entry gets. Only ever read and advanced while the
    # row is locked in the writing transaction, so sequence order equals commit order.
    next_sequence = models.BigIntegerField(default=1)

    def __str__(self) -> str:
        return self.name


class Operation(models.TextChoices):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"


class Resource(models.TextChoices):
    """Resource names, as in the external API's paths."""

    SCHOOLS = "schools"
    GRADES = "grades"
    CLASSES = "classes"
    TEACHERS = "teachers"
    STUDENTS = "students"


class Status(models.TextChoices):
    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class OperationLog(models.Model):
    lane = models.ForeignKey(SyncLane, on_delete=models.PROTECT, related_name="entries", db_column="lane")
    sequence = models.BigIntegerField()
    idempotency_key = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    operation = models.CharField(max_length=16, choices=Operation.choices)
    resource = models.CharField(max_length=16, choices=Resource.choices)
    object_id = models.BigIntegerField()
    # The record as the REST API showed it right after the change (before it, for a delete).
    payload = models.JSONField(encoder=DjangoJSONEncoder)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "operation log entry"
        verbose_name_plural = "operation log"
        ordering = ["lane", "sequence"]
        constraints = [
            models.UniqueConstraint(fields=["lane", "sequence"], name="operationlog_sequence_unique_per_lane"),
        ]
        indexes = [
            models.Index(fields=["status", "sequence"], name="operationlog_status_seq"),
            models.Index(fields=["resource", "object_id"], name="operationlog_object"),
        ]

    def __str__(self) -> str:
        return f"#{self.sequence} {self.operation} {self.resource}/{self.object_id}"
