"""Every process stops within its bound on SIGTERM, and two beats running by mistake deliver once."""

import httpx
import pytest
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from schools.services import school_create
from sync import recorder
from sync.models import OperationLog
from tests.helpers import assert_applied_once_in_order, free_port, wait_for_delivery, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

GUNICORN_GRACEFUL_TIMEOUT = 10  # gunicorn.conf.py
IDLE_STOP_SECONDS = 10


def start_beat(processes, name):
    command = ["-m", "celery", "-A", "config", "beat", "-l", "INFO", "--max-interval", "1"]
    command += ["--scheduler", "django_celery_beat.schedulers:DatabaseScheduler"]
    return processes(command, name, "beat: Starting...")


def start_default_worker(processes, name="default-1"):
    command = ["-m", "celery", "-A", "config", "worker", "-Q", "default", "--concurrency", "1"]
    command += ["-n", f"{name}@%h", "-l", "INFO", "--without-mingle", "--without-gossip"]
    return processes(command, name, "ready.")


def test_gunicorn_stops_within_its_graceful_timeout(processes):
    port = free_port()
    web = processes(
        ["-m", "gunicorn", "config.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "2"],
        "gunicorn",
        "Booting worker",
    )
    assert httpx.get(f"http://127.0.0.1:{port}/api/").status_code == 401
    assert web.terminate() <= GUNICORN_GRACEFUL_TIMEOUT + 5


def test_default_worker_and_beat_stop_promptly(processes):
    worker = start_default_worker(processes)
    beat = start_beat(processes, "beat-stop")
    assert worker.terminate() <= IDLE_STOP_SECONDS
    assert beat.terminate() <= IDLE_STOP_SECONDS


def test_two_beats_by_mistake_still_deliver_each_change_once_in_order(
    simulator, start_sync_worker, processes, monkeypatch
):
    # Only the sweep can deliver these: the writes' own kicks are switched off.
    monkeypatch.setattr(recorder, "kick", lambda lane: None)
    for number in range(20):
        school_create(name=f"Beat {number}")
    every_second, _ = IntervalSchedule.objects.get_or_create(every=1, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.create(name="sweep", task="sync.sweep", interval=every_second, expire_seconds=1)

    start_sync_worker()
    start_default_worker(processes)
    beats = [start_beat(processes, "beat-a"), start_beat(processes, "beat-b")]

    wait_for_delivery()
    wait_until(
        lambda: all("Sending due task sweep" in beat.output() for beat in beats),
        timeout=30,
        message="both beats to have sent the sweep",
    )
    assert len(simulator.applied) == OperationLog.objects.count() == 20
    assert_applied_once_in_order(simulator)
    assert simulator.max_in_flight == 1
