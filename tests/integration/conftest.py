"""Real sync workers (subprocesses) on the broker CELERY_BROKER_URL names, pushing to the simulator.

The workers share the test database, so these tests commit (transactional_db). The test
process plays the web process: its writes kick the dispatcher through the same broker.
"""

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connection

from config.celery import app as celery_app
from sync.models import DEFAULT_LANE, EntryStatus, OperationLog, SyncLane
from tests.simulated import running_simulator, wait_until

BASE_DIR = Path(__file__).resolve().parents[2]
WORKER_READY_SECONDS = 60
DELIVERY_SECONDS = 90

# Short timings so that failures, leases and backoffs play out within a test.
WORKER_ENV = {
    "SYNC_HTTP_TIMEOUT": "5",
    "SYNC_LEASE_SECONDS": "8",  # a run (2 s) plus the HTTP timeout, and a little more
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


@pytest.fixture
def simulator(transactional_db):
    with running_simulator() as (sim, url):
        sim.url = url
        yield sim


@pytest.fixture
def lane(transactional_db):
    # Transactional tests start from an empty database; the migration's lane row is gone.
    SyncLane.objects.get_or_create(pk=DEFAULT_LANE)
    return DEFAULT_LANE


@pytest.fixture
def purged_broker(transactional_db):
    celery_app.control.purge()


@pytest.fixture
def processes(simulator, purged_broker, lane, tmp_path):
    """start(kind, name, **env) starts a project process against the test database and simulator."""
    started: list[Process] = []
    base_env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "SYNC_API_URL": simulator.url,
        "PYTHONUNBUFFERED": "1",
        **WORKER_ENV,
    }

    def start(command: list[str], name: str, ready: str, **env: str) -> Process:
        log = tmp_path / f"{name}.log"
        popen = subprocess.Popen(
            [sys.executable, *command],
            cwd=BASE_DIR,
            env={**base_env, **env},
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        process = Process(name, popen, log)
        started.append(process)
        process.wait_for_output(ready)
        return process

    yield start
    for process in started:
        process.stop()
    for process in started:
        print(f"--- {process.name} log ---\n{process.output()[-5000:]}")  # noqa: T201 - shown on failure


@pytest.fixture
def start_sync_worker(processes):
    def start(name: str = "sync-1", **env: str) -> Process:
        command = ["-m", "celery", "-A", "config", "worker", "-Q", "sync", "--concurrency", "1"]
        command += ["--prefetch-multiplier", "1", "-n", f"{name}@%h", "-l", "INFO", "--without-mingle"]
        command += ["--without-gossip"]
        return processes(command, name, "ready.", **env)

    return start


def wait_for_delivery(timeout: float = DELIVERY_SECONDS, sweep: bool = False) -> None:
    """Wait until no entry is pending, in progress or failed; optionally sweeping like beat."""
    from sync.dispatcher import sweep as run_sweep

    def undelivered():
        return OperationLog.objects.filter(
            status__in=(EntryStatus.PENDING, EntryStatus.IN_PROGRESS, EntryStatus.FAILED)
        ).count()

    wait_until(
        lambda: undelivered() == 0,
        timeout=timeout,
        message="every entry to be delivered",
        every=run_sweep if sweep else None,
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
