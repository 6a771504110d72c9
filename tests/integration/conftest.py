"""Real sync workers (subprocesses) on the broker CELERY_BROKER_URL names, pushing to the simulator.

The workers share the test database, so these tests commit (transactional_db). The test
process plays the web process: its writes kick the dispatcher through the same broker.
"""

import os
import subprocess
import sys

import pytest

from config.celery import app as celery_app
from sync.models import DEFAULT_LANE, SyncLane
from tests.helpers import BASE_DIR, WORKER_ENV, Process, database_url, running_simulator


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
    def start(name: str = "sync-1", concurrency: int = 1, **env: str) -> Process:
        command = ["-m", "celery", "-A", "config", "worker", "-Q", "sync", "--concurrency", str(concurrency)]
        command += ["--prefetch-multiplier", "1", "-n", f"{name}@%h", "-l", "INFO", "--without-mingle"]
        command += ["--without-gossip"]
        return processes(command, name, "ready.", **env)

    return start
