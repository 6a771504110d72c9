"""The transactional outbox: one OperationLog row per committed change, in lane order."""

import uuid

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models

DEFAULT_LANE = "global"


def user_field(help_text: str) -> models.ForeignKey:
    """Who did something to a row: kept as empty, not deleted, when the user is."""
    return models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text=help_text,
    )


class SyncLane(models.Model):
    """A stream of changes delivered strictly in sequence.

    Its row is the sequence lock for writers and carries the lease that lets exactly one
    dispatcher chain push the lane at a time (I8).
    """

    name = models.CharField(max_length=64, primary_key=True)
    next_sequence = models.BigIntegerField(
        default=1,
        help_text="The sequence the next recorded entry gets; advanced only under the row lock, in commit order.",
    )
    lease_token = models.CharField(
        max_length=64, blank=True, default="", help_text="The chain that may push this lane (empty when free)."
    )
    lease_expires_at = models.DateTimeField(
        null=True, blank=True, help_text="Until when the chain holds the lease without renewing it."
    )
    lease_holder = models.CharField(
        max_length=200, blank=True, default="", help_text="The worker whose chain holds the lease."
    )
    last_pushed_sequence = models.BigIntegerField(null=True, blank=True)
    last_pushed_at = models.DateTimeField(null=True, blank=True)
    paused = models.BooleanField(
        default=False,
        help_text="An operator paused the lane: it sends nothing, two-slot entries included; writes still queue.",
    )
    paused_changed_by = user_field(help_text="Who last paused or resumed the lane.")
    paused_changed_at = models.DateTimeField(
        null=True, blank=True, help_text="When the lane was last paused or resumed."
    )

    class Meta:
        permissions = [("pause_synclane", "Can pause and resume a lane")]

    def __str__(self) -> str:
        return self.name


class LaneWakeup(models.Model):
    """The wake-up (dispatch message) a lane has on its way, so that writes send at most one.

    A row apart from the lane's, which writers keep locked while they take sequences.
    """

    lane = models.OneToOneField(SyncLane, on_delete=models.CASCADE, primary_key=True, db_column="lane")
    requested_at = models.DateTimeField(
        null=True, blank=True, help_text="When the wake-up on its way was sent (empty: none is on its way)."
    )

    def __str__(self) -> str:
        return f"{self.lane_id} wake-up"


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


class EntryStatus(models.TextChoices):
    """Where an operation log entry is in its delivery."""

    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


# Entries that still hold their lane back: everything not yet succeeded or cancelled.
OPEN_STATUSES = (EntryStatus.PENDING, EntryStatus.IN_PROGRESS, EntryStatus.FAILED)


class OperationLog(models.Model):
    """An entry of the outbox: one committed change, to be delivered in its lane's sequence."""

    lane = models.ForeignKey(SyncLane, on_delete=models.PROTECT, related_name="entries", db_column="lane")
    sequence = models.BigIntegerField(help_text="The entry's place in its lane, in commit order.")
    idempotency_key = models.UUIDField(
        default=uuid.uuid4,
        unique=True,
        editable=False,
        help_text="Sent unchanged on every attempt, so the external system applies the change once.",
    )
    operation = models.CharField(max_length=16, choices=Operation.choices)
    resource = models.CharField(max_length=16, choices=Resource.choices)
    object_id = models.BigIntegerField()
    payload = models.JSONField(
        encoder=DjangoJSONEncoder,
        help_text="The record as the REST API showed it right after the change (before it, for a delete).",
    )
    school_id = models.BigIntegerField(
        null=True,
        blank=True,
        help_text="The school the record belongs to. An id, not a link: the entry outlives the record and its school.",
    )
    other_school_id = models.BigIntegerField(
        null=True, blank=True, help_text="For a move between schools: the school the record left."
    )
    status = models.CharField(max_length=16, choices=EntryStatus.choices, default=EntryStatus.PENDING)
    attempt_count = models.PositiveIntegerField(default=0, help_text="How many times the entry was sent.")
    maybe_applied = models.BooleanField(
        default=False,
        help_text=(
            "A send ended without a clear answer (a timeout, a lost response, a 5xx, a 409): "
            "the external system may have applied the change."
        ),
    )
    next_attempt_at = models.DateTimeField(
        null=True, blank=True, help_text="While pending after a transient failure: not to be sent before this time."
    )
    last_error = models.TextField(blank=True)
    pushed_at = models.DateTimeField(null=True, blank=True, help_text="When the external system accepted it.")
    actor = user_field(help_text="Who made the change.")
    cancelled_by = user_field(help_text="Who cancelled the entry.")
    cancelled_at = models.DateTimeField(null=True, blank=True)
    retried_by = user_field(help_text="Who last made the entry due again by hand.")
    retried_at = models.DateTimeField(null=True, blank=True)
    resent_by = models.CharField(
        max_length=150, blank=True, default="", help_text="Who last queued the entry to be sent again (sync_resend)."
    )
    resent_at = models.DateTimeField(null=True, blank=True)
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
            # The dispatcher's and the ordering guard's reads: a lane's open entries by sequence.
            models.Index(
                fields=["lane", "sequence"],
                name="operationlog_open",
                condition=models.Q(status__in=OPEN_STATUSES),
            ),
            # A write's check for school lanes' backlog after a switch back to the global lane:
            # in a steady global mode, an empty index.
            models.Index(
                fields=["lane"],
                name="operationlog_open_not_global",
                condition=models.Q(status__in=OPEN_STATUSES) & ~models.Q(lane=DEFAULT_LANE),
            ),
            models.Index(fields=["status", "sequence"], name="operationlog_status_seq"),
            # Retention purge and the dashboard's 24-hour history: entries closed since a time.
            models.Index(fields=["updated_at"], name="operationlog_updated_at"),
            models.Index(fields=["resource", "object_id"], name="operationlog_object"),
            # A school's entries, for people who see only their schools' part of the log.
            models.Index(fields=["school_id", "sequence"], name="operationlog_school"),
            models.Index(
                fields=["other_school_id"],
                name="operationlog_other_school",
                condition=models.Q(other_school_id__isnull=False),
            ),
        ]
        permissions = [
            ("retry_operationlog", "Can retry a failed or waiting entry"),
            ("cancel_operationlog", "Can cancel an entry that was not sent"),
        ]

    def __str__(self) -> str:
        return f"#{self.sequence} {self.operation} {self.resource}/{self.object_id}"

    def slots(self) -> list[tuple[str, int]]:
        """Every (lane, sequence) the entry holds, its own lane first, the others by name."""
        others = [] if self.pk is None else sorted((slot.lane_id, slot.sequence) for slot in self.other_slots.all())
        return [(self.lane_id, self.sequence), *others]


class OperationSlot(models.Model):
    """A place an entry holds in a lane other than its own: a move between schools, a hand-over
    of a unique value, a switch of lane mode.

    The entry is sent by its own lane, once it is the next open entry of every lane it has a
    slot in; until then each of those lanes waits for it.
    """

    entry = models.ForeignKey(OperationLog, on_delete=models.CASCADE, related_name="other_slots")
    lane = models.ForeignKey(SyncLane, on_delete=models.PROTECT, related_name="+", db_column="lane")
    sequence = models.BigIntegerField(help_text="The slot's place in that lane, from the lane's own counter.")

    class Meta:
        ordering = ["lane", "sequence"]
        constraints = [
            models.UniqueConstraint(fields=["lane", "sequence"], name="operationslot_sequence_unique_per_lane"),
        ]

    def __str__(self) -> str:
        return f"{self.lane_id}={self.sequence}"


class ReleasedValue(models.Model):
    """A value unique across lanes (a school's name, a teacher's e-mail) that an entry's change gave up.

    A later change in another lane that takes the value holds a slot in this entry's lane,
    so the external system never sees the new holder before the old one let go.
    """

    entry = models.ForeignKey(OperationLog, on_delete=models.CASCADE, related_name="released_values")
    key = models.CharField(max_length=300, db_index=True, help_text="<kind>.<field>=<value>")

    def __str__(self) -> str:
        return self.key


class ExternalOutage(models.Model):
    """Whether the external system is failing across lanes; one row, absent until the first failure.

    Transient failures in a row from several lanes (an outage, 429s) hold every lane; one
    probe at a time, after a growing wait, finds out when the system is back, and the
    first answer that is not a transient failure ends the outage for all lanes.
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    failures_in_a_row = models.PositiveIntegerField(default=0)
    failing_lanes = models.JSONField(default=list, help_text="The lanes whose sends failed in a row.")
    started_at = models.DateTimeField(null=True, blank=True, help_text="When the lanes started to hold.")
    held_until = models.DateTimeField(
        null=True, blank=True, help_text="While lanes hold: no probe before this time. Empty: no outage."
    )
    probes_failed = models.PositiveIntegerField(default=0)
    probe_lane = models.CharField(max_length=64, blank=True, default="", help_text="The lane sending the probe.")
    probe_expires_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"held until {self.held_until}" if self.held_until else "no outage"


class Outcome(models.TextChoices):
    SUCCESS = "success"
    TRANSIENT = "transient"  # retried later with the same idempotency key
    PERMANENT = "permanent"  # needs an operator


class OperationAttempt(models.Model):
    """One try at pushing an entry to the external API."""

    entry = models.ForeignKey(OperationLog, on_delete=models.CASCADE, related_name="attempts")
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField()
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["entry", "started_at"]

    def __str__(self) -> str:
        return f"{self.outcome} {self.status_code or ''}".strip()
