"""An import of one spreadsheet into one school: its rows, and where writing them has got to."""

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone


class ImportKind(models.TextChoices):
    STUDENTS = "students"
    TEACHERS = "teachers"
    CLASSES = "classes"


class ImportStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class RecordImport(models.Model):
    """A confirmed import: its rows as the file had them, written all or none by a background task.

    The rows are stored, not the file, so a worker that dies mid-import starts again from
    them; the import commits with the rows it wrote, so it is written once.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(max_length=16, choices=ImportKind.choices)
    school = models.ForeignKey("schools.School", on_delete=models.CASCADE, related_name="imports")
    file_name = models.CharField(max_length=255)
    rows = models.JSONField(help_text="The file's rows, each its line number and a dict of its columns, in file order.")
    status = models.CharField(max_length=16, choices=ImportStatus.choices, default=ImportStatus.QUEUED)
    rows_total = models.PositiveIntegerField()
    rows_done = models.PositiveIntegerField(default=0, help_text="Rows checked and written, once it is done.")
    created = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    unchanged = models.PositiveIntegerField(default=0)
    errors = models.JSONField(default=list, blank=True, help_text="Row errors that refused the import.")
    lane = models.CharField(max_length=64, blank=True, help_text="The lane its entries went to.")
    first_sequence = models.BigIntegerField(null=True, blank=True)
    last_sequence = models.BigIntegerField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    queued_at = models.DateTimeField(
        default=timezone.now, help_text="When its task was last sent; the sweep sends it again after a while."
    )
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.kind} into {self.school_id} from {self.file_name}"
