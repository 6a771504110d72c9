"""Helpers the tests share: the simulator in a thread, polling with a deadline, API clients,
outbox entries made directly, and the project's processes started for end-to-end tests."""

import os
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import quote

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from rest_framework.test import APIClient

from schools.models import ScheduledChange, SchoolClass, Student
from sync import dispatcher, lease, runs, selectors
from sync.models import DEFAULT_LANE, OPEN_STATUSES, EntryStatus, OperationLog, SyncLane
from sync.simulator import ExternalSimulator
from sync.simulator_server import SimulatorServer
from tests.factories import SchoolFactory, UserFactory

POLL_INTERVAL_SECONDS = 0.05


@contextmanager
def running_simulator(**options) -> Iterator[tuple[ExternalSimulator, str]]:
    simulator = ExternalSimulator(latency_scale=0, **options)
    server = SimulatorServer(("127.0.0.1", 0), simulator)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield simulator, server.url
    finally:
        server.shutdown()
        server.server_close()


def wait_until(
    condition: Callable[[], object], *, timeout: float, message: str, every: Callable[[], object] | None = None
):
    """Poll until condition() is truthy; fail with message at the deadline. every() runs each round."""
    deadline = time.monotonic() + timeout
    while True:
        if every is not None:
            every()
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s: {message}")
        time.sleep(POLL_INTERVAL_SECONDS)


def as_beat_would(job: Callable[[], object], every_seconds: float) -> Callable[[], None]:
    """A callable for ``wait_until(every=…)`` that runs ``job`` at most once per interval, like beat."""
    last_run = [float("-inf")]

    def tick() -> None:
        if time.monotonic() - last_run[0] >= every_seconds:
            last_run[0] = time.monotonic()
            job()

    return tick


def api_client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def in_seconds(seconds: float) -> datetime:
    return timezone.now() + timedelta(seconds=seconds)


# --- Scheduled changes -------------------------------------------------------------------


def move_student(student: Student, school_class: SchoolClass, when=None, **extra) -> dict:
    return {
        "execute_at": (when or in_seconds(3600)).isoformat(),
        "resource": "students",
        "operation": "update",
        "target_id": student.pk,
        "data": {"school_class": school_class.pk},
        **extra,
    }


def schedule(**change) -> ScheduledChange:
    """A scheduled change, made by district staff who may make any change unless ``actor`` names who."""
    from schools.scheduling.services import scheduled_change_create

    if change.get("actor") is None:
        change["actor"] = district_staff()
    return scheduled_change_create(**change)


def district_staff():
    """A superuser: every permission, every school."""
    return UserFactory(is_staff=True, is_superuser=True)


def make_due(*changes: ScheduledChange) -> None:
    past = timezone.now() - timedelta(seconds=1)
    ScheduledChange.objects.filter(pk__in=[c.pk for c in changes]).update(execute_at=past, due_at=past)


# --- Outbox entries -----------------------------------------------------------------------


def school_entries(count: int = 1) -> list[OperationLog]:
    """Create schools through the services; their entries, in sequence order."""
    for _ in range(count):
        SchoolFactory()
    return list(OperationLog.objects.order_by("sequence"))


def entry_with_status(status, **fields) -> OperationLog:
    """A school's entry, set to the given status (and fields) directly."""
    SchoolFactory()
    entry = OperationLog.objects.order_by("-sequence").first()
    OperationLog.objects.filter(pk=entry.pk).update(status=status, **fields)
    entry.refresh_from_db()
    return entry


def take_lease(token: str = "chain-1", lane: str = DEFAULT_LANE) -> str:
    assert lease.acquire(lane, token)
    return token


def bulk_entries(
    count: int, status: str = "pending", *, lane_name: str = DEFAULT_LANE, resource: str = "schools", **fields
) -> list:
    """OperationLog entries written directly, in sequence, for tests and benchmarks that read
    or push the log and need no records behind it (their kicks would start the lane early)."""
    with transaction.atomic():
        SyncLane.objects.get_or_create(pk=lane_name)
        lane = SyncLane.objects.select_for_update().get(pk=lane_name)
        first = lane.next_sequence
        lane.next_sequence = first + count
        lane.save(update_fields=["next_sequence"])
        return OperationLog.objects.bulk_create(
            (
                OperationLog(
                    lane=lane,
                    sequence=first + offset,
                    operation="create",
                    resource=resource,
                    object_id=first + offset,
                    payload={"id": first + offset, "name": f"School {first + offset}", "address": ""},
                    status=status,
                    **fields,
                )
                for offset in range(count)
            ),
            batch_size=2000,
        )


# --- Processes for end-to-end tests --------------------------------------------------------

BASE_DIR = Path(__file__).resolve().parents[1]
WORKER_READY_SECONDS = 60
DELIVERY_SECONDS = 90

# Short timings so that failures, leases and backoffs play out within a test.
WORKER_ENV = {
    "SYNC_HTTP_TIMEOUT": "5",
    "SYNC_LEASE_SECONDS": "3",  # the shortest allowed: a dead worker's lanes resume quickly
    "SYNC_RETRY_BASE_SECONDS": "0.05",
    "SYNC_RETRY_MAX_SECONDS": "0.5",
}


def database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    credentials = quote(db["USER"] or "")
    if db["PASSWORD"]:
        credentials += f":{quote(db['PASSWORD'])}"
    return f"postgres://{credentials}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def broker_is_filesystem() -> bool:
    return settings.CELERY_BROKER_URL.startswith("filesystem://")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Process:
    """A project process (worker, web) started for a test, with its log."""

    name: str
    popen: subprocess.Popen
    log: Path
    stopped: bool = field(default=False)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_for_output(self, text: str, timeout: float = WORKER_READY_SECONDS) -> None:
        def seen():
            if self.popen.poll() is not None:
                raise AssertionError(f"{self.name} exited early:\n{self.output()[-3000:]}")
            return text in self.output()

        wait_until(seen, timeout=timeout, message=f"{self.name} to print {text!r}")

    def kill(self) -> None:
        """kill -9 the process and its children, as a crash would."""
        os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=10)
        self.stopped = True

    def terminate(self, timeout: float = 30) -> float:
        """SIGTERM, as a redeploy does; returns the seconds it took to exit."""
        started = time.monotonic()
        self.popen.send_signal(signal.SIGTERM)
        self.popen.wait(timeout=timeout)
        self.stopped = True
        return time.monotonic() - started

    def stop(self) -> None:
        if self.stopped or self.popen.poll() is not None:
            return
        try:
            self.terminate(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()


def wait_for_delivery(timeout: float = DELIVERY_SECONDS, sweep: bool = False) -> None:
    """Wait until no entry is pending, in progress or failed; optionally sweeping like beat."""

    def undelivered():
        return OperationLog.objects.filter(status__in=OPEN_STATUSES).count()

    wait_until(
        lambda: undelivered() == 0,
        timeout=timeout,
        message="every entry to be delivered",
        every=dispatcher.sweep if sweep else None,
    )


def assert_applied_once_in_order(simulator) -> None:
    """The external side applied every succeeded entry once, in sequence order (I2, I4)."""
    sent = list(
        OperationLog.objects.filter(status=EntryStatus.SUCCEEDED)
        .order_by("sequence")
        .values_list("sequence", "idempotency_key")
    )
    applied = [(item["sequence"], item["key"]) for item in simulator.applied]
    assert applied == [(sequence, str(key)) for sequence, key in sent]
    assert simulator.out_of_order == 0


def lane_of(school) -> str:
    """A school's lane with SYNC_LANES=school."""
    return f"school-{school.pk}"


def deliver_round_robin(max_rounds: int = 100) -> None:
    """Push every lane's due entries, a run per lane in turn, until nothing is due: the engine without Celery."""
    for _ in range(max_rounds):
        progressed = False
        for lane in selectors.lanes_to_sweep():
            token = uuid.uuid4().hex
            if not lease.acquire(lane, token):
                continue
            due = selectors.due_entries(lane, timezone.now(), runs.RUN_LENGTH)
            if due:
                runs.push_run(due, token)
                progressed = True
            lease.release(lane, token)
        if not progressed:
            return
    raise AssertionError(f"still delivering after {max_rounds} rounds")


def run_in_threads(targets: list[Callable[[], object]]) -> tuple[list[threading.Thread], list[Exception]]:
    """Start each function in a thread of its own, on its own database connection; their exceptions are collected."""
    errors: list[Exception] = []

    def run(target):
        try:
            target()
        except Exception as exc:  # reported to the test
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(target,)) for target in targets]
    for thread in threads:
        thread.start()
    return threads, errors
