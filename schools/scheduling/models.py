"""The scheduled change: a record change to apply later, and its state as workers claim and run it."""

import uuid

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.utils import timezone

from sync.models import Operation, Resource


class ScheduledChangeStatus(models.TextChoices):
    SCHEDULED = "scheduled"
    RUNNING = "running"
    DONE = "done"
    CANCELLED = "cancelled"
    FAILED = "failed"


class ScheduledChange(models.Model):
    """A record change to apply at ``execute_at`` through the same services as an immediate one.

    Delivery state lives on the row: a worker claims it (``running``, with a claim token),
    applies it and confirms it (``done``) in the transaction that makes the change, so a
    change is applied exactly once even when workers race or crash.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    execute_at = models.DateTimeField()
    resource = models.CharField(max_length=16, choices=Resource.choices)
    operation = models.CharField(max_length=16, choices=Operation.choices)
    target_id = models.BigIntegerField(null=True, blank=True, help_text="The record to update or delete.")
    data = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)
    school_id = models.BigIntegerField(
        null=True,
        blank=True,
        db_index=True,
        help_text=(
            "The school of the record it changes (for a create, of its parent; none for a new school). "
            "An id, not a link: the change outlives the school."
        ),
    )
    status = models.CharField(
        max_length=16, choices=ScheduledChangeStatus.choices, default=ScheduledChangeStatus.SCHEDULED
    )
    due_at = models.DateTimeField(help_text="When it may run next: execute_at, later after a transient failure.")
    attempt_count = models.PositiveIntegerField(
        default=0, help_text="How many times it ran (done, failed, or to be retried); claims and crashes do not count."
    )
    error = models.TextField(blank=True)
    claim_token = models.CharField(max_length=32, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    result_object_id = models.BigIntegerField(null=True, blank=True, help_text="The record it created or changed.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(
        default=timezone.now,
        editable=False,
        help_text="When it was scheduled; orders changes to one record that are due at the same time.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["execute_at"]
        indexes = [
            models.Index(
                fields=["due_at"], name="scheduled_due", condition=models.Q(status=ScheduledChangeStatus.SCHEDULED)
            ),
            models.Index(
                fields=["claimed_at"],
                name="scheduled_running",
                condition=models.Q(status=ScheduledChangeStatus.RUNNING),
            ),
            models.Index(fields=["execute_at"], name="scheduled_execute_at"),
            # The runner's order check: a record's unfinished changes.
            models.Index(
                fields=["resource", "target_id", "execute_at"],
                name="scheduled_unfinished",
                condition=models.Q(status__in=[ScheduledChangeStatus.SCHEDULED, ScheduledChangeStatus.RUNNING]),
            ),
        ]

    def __str__(self) -> str:
        target = f"/{self.target_id}" if self.target_id else ""
        return f"{self.operation} {self.resource}{target} at {self.execute_at:%Y-%m-%d %H:%M}"
