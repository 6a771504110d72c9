"""A 2,000-row import with real workers and the simulator: progress to the end, every entry delivered in
order, and a kill -9 of the default worker mid-import losing and doubling no row."""

from collections import Counter

import pytest
from django.conf import settings as django_settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from schools.imports import services
from schools.imports.models import ImportStatus, RecordImport
from schools.models import SchoolMembership, Student
from sync.models import OperationLog
from tests.conftest import ALL_RECORD_PERMISSIONS
from tests.factories import GradeFactory, SchoolClassFactory, SchoolFactory, UserFactory
from tests.helpers import as_beat_would, assert_applied_once_in_order, wait_for_delivery, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

CACHE_DIR = django_settings.VAR_DIR / "cache"
ROWS = 2000
SWEEP_SECONDS = 2
KILL_AFTER_ROWS = 100


@pytest.fixture
def shared_cache(settings):
    """The cache the worker reports progress in: the default directory under var/, as without DJANGO_CACHE_URL."""
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache", "LOCATION": str(CACHE_DIR)}
    }
    return {"DJANGO_CACHE_URL": ""}


@pytest.fixture
def start_default_worker(processes, shared_cache):
    def start(name: str):
        command = ["-m", "celery", "-A", "config", "worker", "-Q", "default", "--concurrency", "1"]
        command += ["-n", f"{name}@%h", "-l", "INFO", "--without-mingle", "--without-gossip"]
        return processes(command, name, "ready.", **shared_cache)

    return start


@pytest.mark.timeout(360)
def test_a_killed_worker_mid_import_neither_loses_nor_doubles_a_row(
    start_default_worker, start_sync_worker, simulator, monkeypatch
):
    school = SchoolFactory(name="Alder")
    grade = GradeFactory(school=school, level=1)
    classes = [SchoolClassFactory(grade=grade, name=name).name for name in ("1A", "1B", "1C")]
    registrar = UserFactory(permissions=ALL_RECORD_PERMISSIONS)
    SchoolMembership.objects.create(user=registrar, school=school)
    text = "student_number,first_name,last_name,grade,class\n" + "".join(
        f"N{n:05d},First{n},Last{n},1,{classes[n % 3]}\n" for n in range(ROWS)
    )
    upload = SimpleUploadedFile("students.csv", text.encode())
    start_sync_worker("sync-1")
    worker = start_default_worker("default-crashing")

    record_import = services.import_start(kind="students", school=school, upload=upload, user=registrar)

    def rows_done() -> int:
        return services.progress(RecordImport.objects.get(pk=record_import.pk))[1]

    wait_until(lambda: rows_done() >= KILL_AFTER_ROWS, timeout=60, message="the import to be under way")
    worker.kill()
    assert RecordImport.objects.get(pk=record_import.pk).status == ImportStatus.QUEUED  # nothing committed
    assert not Student.objects.exists()

    start_default_worker("default-restarted")
    # RabbitMQ delivers the task again when the dead worker's connection drops; Redis keeps it
    # unacknowledged for its visibility timeout, and the sweep (beat's job) queues it again.
    monkeypatch.setattr(services, "STALLED_AFTER_SECONDS", 1)
    wait_until(
        lambda: RecordImport.objects.get(pk=record_import.pk).status == ImportStatus.DONE,
        timeout=180,
        message="the import to be written after the crash",
        every=as_beat_would(lambda: services.sweep(timezone.now()), every_seconds=SWEEP_SECONDS),
    )
    done = RecordImport.objects.get(pk=record_import.pk)
    assert (done.rows_done, done.created, services.progress(done)) == (ROWS, ROWS, ("done", ROWS))

    numbers = Counter(Student.objects.values_list("student_number", flat=True))
    assert len(numbers) == ROWS
    assert set(numbers.values()) == {1}
    entries = OperationLog.objects.filter(resource="students").order_by("sequence")
    assert [entry.payload["student_number"] for entry in entries] == [f"N{n:05d}" for n in range(ROWS)]
    assert list(entries.values_list("sequence", flat=True)) == list(range(done.first_sequence, done.last_sequence + 1))

    wait_for_delivery(timeout=180)
    assert_applied_once_in_order(simulator)
    assert services.delivery(done, done.finished_at)["entries"] == ROWS
