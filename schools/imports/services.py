"""Previewing, starting and running an import: every row through the record services, all or none, in file order."""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from celery import signature
from django.contrib.auth.models import User
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from config.errors import ConflictError
from schools import access
from schools.imports import files
from schools.imports.models import ImportKind, ImportStatus, RecordImport
from schools.imports.plans import KINDS, Action, RowPlan, plan, row_errors
from schools.models import School
from schools.services import record_create, record_update
from sync import lanes
from sync.models import OPEN_STATUSES, EntryStatus, OperationLog, SyncLane
from sync.recorder import lock_lanes

logger = logging.getLogger(__name__)

PROGRESS_EVERY_ROWS = 25
"""How often a running import tells readers how far it has got."""
PROGRESS_TTL_SECONDS = 24 * 60 * 60
RATE_WINDOW_SECONDS = 300
"""The recent past over which a lane's push rate is measured for the delivery estimate."""
STALLED_AFTER_SECONDS = 30
"""A queued import no run holds, this long after its task was sent, lost it (a broker restart, a worker
killed on a broker that redelivers only after a visibility timeout): the sweep queues it again."""

IMPORT_PERMISSIONS = ("add", "change")
MAY_NOT_IMPORT = "You may not import {kind}: it needs {permissions}."
CREATOR_MAY_NOT = "{user}, who started this import, may no longer import {kind} into this school."


class ImportRefused(Exception):
    """Rows of the file cannot be imported; nothing was written. ``plans`` say which and why."""

    def __init__(self, plans: list[RowPlan]):
        super().__init__(f"{sum(1 for row in plans if row.errors)} rows have errors")
        self.plans = plans


@dataclass
class Preview:
    plans: list[RowPlan]

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys([Action.CREATE, Action.UPDATE, Action.UNCHANGED, Action.ERROR], 0)
        for row in self.plans:
            counts[row.action] += 1
        return counts

    @property
    def has_errors(self) -> bool:
        return any(row.errors for row in self.plans)


def _permission(action: str, kind: str) -> str:
    model = KINDS[ImportKind(kind)].model._meta
    return f"{model.app_label}.{action}_{model.model_name}"


def readable_kinds(user: User) -> list[str]:
    """The kinds whose records, and so imports, the user may read: with view, or change (as the admin counts it)."""
    return [
        kind
        for kind in ImportKind.values
        if user.has_perm(_permission("view", kind)) or user.has_perm(_permission("change", kind))
    ]


def visible_to(user: User, imports: QuerySet[RecordImport]) -> QuerySet[RecordImport]:
    """The imports the user may follow: into their schools, of kinds whose records they may read."""
    return access.scoped(imports, user).filter(kind__in=readable_kinds(user))


def permission_refusal(user: User, kind: str) -> str | None:
    """Why the user may not import this kind of record anywhere; None if they may."""
    needed = [_permission(action, kind) for action in IMPORT_PERMISSIONS]
    if user.is_active and user.has_perms(needed):
        return None
    return MAY_NOT_IMPORT.format(kind=kind, permissions=" and ".join(needed))


def import_preview(
    *, kind: str, school: School, upload: UploadedFile, user: User
) -> tuple[Preview, list[tuple[int, dict[str, str]]]]:
    """What importing the file would do, row by row, and its rows; writes nothing."""
    rows = files.parse(upload, kind)
    return Preview(plan(kind, school, rows, user)), rows


def import_start(*, kind: str, school: School, upload: UploadedFile, user: User) -> RecordImport:
    """Check the file and, if every row can be imported, queue it to be written in the background.

    Raises ImportRefused (nothing written) when a row has an error.
    """
    preview, rows = import_preview(kind=kind, school=school, upload=upload, user=user)
    if preview.has_errors:
        raise ImportRefused(preview.plans)
    record_import = RecordImport.objects.create(
        kind=kind, school=school, file_name=upload.name or "", rows=rows, rows_total=len(rows), created_by=user
    )
    transaction.on_commit(lambda: _queue(record_import.pk), robust=True)
    logger.info("import %s queued: %s rows of %s into school %s", record_import.pk, len(rows), kind, school.pk)
    return record_import


def _queue(import_id) -> None:
    signature("schools.run_import", args=[str(import_id)]).apply_async()


def import_run(import_id) -> None:
    """Write a queued import, all rows or none, as its creator with their rights of now.

    The school's lane is locked first and for the whole import, so its entries take
    consecutive sequences in file order. A worker that dies mid-import writes nothing; the
    task comes back and the import runs again from its first row.
    """
    try:
        with transaction.atomic():
            record_import = (
                RecordImport.objects.select_for_update(of=("self",))
                .select_related("school", "created_by")
                .filter(pk=import_id, status__in=[ImportStatus.QUEUED, ImportStatus.RUNNING])
                .first()
            )
            if record_import is None:
                return  # done, failed or gone: a second delivery of the task
            _write(record_import)
    except ImportRefused as refused:
        _fail(import_id, [_error(row) for row in refused.plans if row.errors])
    except (ValidationError, ConflictError, IntegrityError) as exc:
        _fail(import_id, [{"line": None, "errors": {"row": [str(exc)]}}])
        logger.warning("import %s failed: %s", import_id, exc)
    except DatabaseError:
        # The database went away or a deadlock was broken: nothing was written, and the import
        # stays queued for the sweep to run again.
        logger.warning("import %s rolled back; it runs again from the sweep", import_id, exc_info=True)


def _write(record_import: RecordImport) -> None:
    creator, school, kind = record_import.created_by, record_import.school, record_import.kind
    started = timezone.now()
    _set_progress(record_import.pk, 0)
    if creator is None or permission_refusal(creator, kind) or not access.may_access(creator, [school.pk]):
        name = creator.username if creator is not None else "The user"
        raise ValidationError(CREATOR_MAY_NOT.format(user=name, kind=kind))
    lane = lanes.lane_of_school(school.pk)
    lock_lanes([lane])  # before the rows are checked: nothing in the school can change until the import commits
    # The services validate each row as they write it; what the preview checked beyond that is checked here.
    plans = plan(kind, school, record_import.rows, creator, check_models=False)
    if any(row.errors for row in plans):
        raise ImportRefused(plans)
    first = SyncLane.objects.get(pk=lane).next_sequence
    model_class = KINDS[ImportKind(kind)].model
    for done, row in enumerate(plans, start=1):
        try:
            if row.action == Action.CREATE:
                record_create(model=model_class, data=row.data, actor=creator)
            elif row.action == Action.UPDATE and row.record is not None:
                record_update(instance=row.record, data=row.data, actor=creator)
        except ValidationError as exc:
            row.errors = row_errors(kind, exc)
            raise ImportRefused([row]) from exc  # the rows written so far roll back with the transaction
        if done % PROGRESS_EVERY_ROWS == 0:
            _set_progress(record_import.pk, done)
    after = SyncLane.objects.get(pk=lane).next_sequence
    counts = Preview(plans).counts()
    RecordImport.objects.filter(pk=record_import.pk).update(
        status=ImportStatus.DONE,
        rows_done=len(plans),
        created=counts[Action.CREATE],
        updated=counts[Action.UPDATE],
        unchanged=counts[Action.UNCHANGED],
        lane=lane,
        first_sequence=first if after > first else None,
        last_sequence=after - 1 if after > first else None,
        started_at=started,
        finished_at=timezone.now(),
    )
    transaction.on_commit(lambda: _forget_progress(record_import.pk))
    logger.info("import %s done: %s", record_import.pk, counts)


def _fail(import_id, errors: list[dict]) -> None:
    RecordImport.objects.filter(pk=import_id, status__in=[ImportStatus.QUEUED, ImportStatus.RUNNING]).update(
        status=ImportStatus.FAILED, errors=errors, finished_at=timezone.now()
    )
    _forget_progress(import_id)


def _error(row: RowPlan) -> dict:
    return {"line": row.line, "errors": row.errors}


def _progress_key(import_id) -> str:
    return f"schools:import:{import_id}:rows_done"


def _set_progress(import_id, rows_done: int) -> None:
    """Best effort: with the cache down an import is written all the same, only not followed."""
    try:
        cache.set(_progress_key(import_id), rows_done, PROGRESS_TTL_SECONDS)
    except Exception:  # the cache's client raises its own connection errors
        logger.warning("import %s: progress not kept, the cache is unavailable", import_id, exc_info=True)


def _forget_progress(import_id) -> None:
    try:
        cache.delete(_progress_key(import_id))
    except Exception:
        logger.warning("import %s: progress not cleared, the cache is unavailable", import_id, exc_info=True)


def progress(record_import: RecordImport) -> tuple[str, int]:
    """The import's status and rows done: while it runs, as far as its worker has told."""
    if record_import.status != ImportStatus.QUEUED:
        return record_import.status, record_import.rows_done
    try:
        rows_done = cache.get(_progress_key(record_import.pk))
    except Exception:
        logger.warning("import %s: progress unknown, the cache is unavailable", record_import.pk, exc_info=True)
        rows_done = None
    if rows_done is None:
        return record_import.status, 0
    return ImportStatus.RUNNING, rows_done


def delivery(record_import: RecordImport, now: datetime) -> dict | None:
    """How many of the import's entries the other system has, and when the rest should have arrived.

    The estimate divides what the lane still has to send up to the import's last entry by
    the lane's push rate over the last RATE_WINDOW_SECONDS; None until it has pushed.
    """
    if record_import.first_sequence is None or record_import.last_sequence is None:
        return None
    lane = record_import.lane
    entries = OperationLog.objects.filter(
        lane_id=lane, sequence__range=(record_import.first_sequence, record_import.last_sequence)
    )
    total = record_import.last_sequence - record_import.first_sequence + 1
    delivered = entries.filter(pushed_at__isnull=False).count()
    cancelled = entries.filter(status=EntryStatus.CANCELLED).count()
    ahead = OperationLog.objects.filter(
        lane_id=lane, sequence__lte=record_import.last_sequence, status__in=OPEN_STATUSES
    ).count()
    pushed_recently = OperationLog.objects.filter(
        lane_id=lane, pushed_at__gte=now - timedelta(seconds=RATE_WINDOW_SECONDS)
    ).count()
    rate = pushed_recently / RATE_WINDOW_SECONDS
    eta_seconds = 0.0 if ahead == 0 else (ahead / rate if rate else None)
    return {
        "entries": total,
        "delivered": delivered,
        "cancelled": cancelled,
        "to_send_before_done": ahead,
        "push_rate_per_minute": round(rate * 60, 1),
        "eta_seconds": round(eta_seconds, 1) if eta_seconds is not None else None,
        "eta": now + timedelta(seconds=eta_seconds) if eta_seconds is not None else None,
    }


def sweep(now: datetime) -> int:
    """Queue again the imports whose task was lost (a broker restart, a rolled-back run).

    A running import holds its row lock, so the rows that can be locked are waiting; each
    is queued again at most once every STALLED_AFTER_SECONDS.
    """
    with transaction.atomic():
        stalled = list(
            RecordImport.objects.select_for_update(skip_locked=True)
            .filter(status=ImportStatus.QUEUED, queued_at__lt=now - timedelta(seconds=STALLED_AFTER_SECONDS))
            .values_list("pk", flat=True)
        )
        RecordImport.objects.filter(pk__in=stalled).update(queued_at=now)
    for import_id in stalled:
        _queue(import_id)
    return len(stalled)
