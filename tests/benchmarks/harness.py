"""Shared plumbing for `make bench`: a fresh PostgreSQL database, project processes, timing helpers."""

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parents[2]
RESULTS_DIR = BASE_DIR / "docs" / "bench"
LOG_DIR = BASE_DIR / "var" / "bench"

POSTGRES_ADMIN_URL = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432")
DATABASE_NAME = "school_sync_bench"
DATABASE_URL = f"{POSTGRES_ADMIN_URL}/{DATABASE_NAME}"
BROKER_URL = os.environ.get("BENCH_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")

ENV = {
    **os.environ,
    "DATABASE_URL": DATABASE_URL,
    "CELERY_BROKER_URL": BROKER_URL,
    "DJANGO_SECRET_KEY": "bench-only-secret-key-not-for-production",
    "DJANGO_DEBUG": "false",
    "DJANGO_SECURE_SSL_REDIRECT": "false",
    "DJANGO_LOG_LEVEL": "WARNING",
    "DJANGO_CACHE_URL": "redis://127.0.0.1:6379/14",
    "API_THROTTLE_USER": "100000000/minute",
    # The scheduled-changes benchmark schedules 100,000 changes in a few minutes as one user.
    "SCHEDULED_CHANGES_PER_MINUTE": "100000000",
    "SCHEDULED_CHANGES_MAX_PENDING": "100000000",
    "PYTHONUNBUFFERED": "1",
}


def setup_django() -> None:
    os.environ.update(ENV)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    sys.path.insert(0, str(BASE_DIR))
    import django

    django.setup()
    from config.celery import app

    app.control.purge()  # messages left by earlier runs would skew this one


def fresh_database() -> None:
    """Drop and recreate the bench database, then migrate it."""
    import psycopg

    with psycopg.connect(f"{POSTGRES_ADMIN_URL}/postgres", autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {DATABASE_NAME} WITH (FORCE)")
        connection.execute(f"CREATE DATABASE {DATABASE_NAME}")
    manage("migrate", "--no-input", "-v", "0")


def vacuum(*tables: str) -> None:
    """VACUUM ANALYZE between measurements, as autovacuum does on a server between bursts.

    The local PostgreSQL runs with autovacuum off, so without this every run would scan
    the dead index entries of all the runs before it.
    """
    import psycopg

    with psycopg.connect(DATABASE_URL, autocommit=True) as connection:
        for table in tables:
            connection.execute(f"VACUUM ANALYZE {table}")


def manage(*args: str) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=BASE_DIR, env=ENV, check=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def processes(*commands: tuple[str, list[str], str, dict]):
    """Start (name, argv, ready text, extra env) processes; stop them on exit."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    started = []
    try:
        for name, argv, ready, extra_env in commands:
            log = LOG_DIR / f"{name}.log"
            popen = subprocess.Popen(
                [sys.executable, *argv],
                cwd=BASE_DIR,
                env={**ENV, **extra_env},
                stdout=log.open("wb"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            started.append(popen)
            deadline = time.monotonic() + 60
            while ready not in log.read_text(errors="replace"):
                if popen.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{name} did not start:\n{log.read_text(errors='replace')[-2000:]}")
                time.sleep(0.1)
        yield started
    finally:
        for popen in started:
            if popen.poll() is None:
                popen.send_signal(signal.SIGTERM)  # a warm shutdown, as a redeploy does
        for popen in started:
            try:
                popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(popen.pid, signal.SIGKILL)


def gunicorn(port: int, workers: int = 3) -> tuple[str, list[str], str, dict]:
    argv = ["-m", "gunicorn", "config.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", str(workers)]
    return ("gunicorn", [*argv, "--access-logfile", "/dev/null"], "Booting worker", {})


def celery_worker(name: str, queue: str, concurrency: int = 1, **env: str) -> tuple[str, list[str], str, dict]:
    argv = ["-m", "celery", "-A", "config", "worker", "-Q", queue, "--concurrency", str(concurrency)]
    argv += ["--prefetch-multiplier", "1", "-n", f"{name}@%h", "-l", "INFO", "--without-mingle"]
    argv += ["--without-gossip"]
    return (name, argv, "ready.", env)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))
    return ordered[index]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "p50": percentile(values, 0.50),
        "p99": percentile(values, 0.99),
        "mean": statistics.fmean(values) if values else float("nan"),
    }


def write_results(name: str, results: dict) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return path


def wait_until(condition, timeout: float, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark step did not finish in time")
        time.sleep(every)


def rss(pid: int) -> int:
    """Resident memory of the worker and its pool processes, in bytes."""
    total = 0
    for proc in [pid, *_children(pid)]:
        status = Path(f"/proc/{proc}/status").read_text()
        total += int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS"))) * 1024
    return total


def _children(pid: int) -> list[int]:
    children = []
    for path in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = path.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(path.parent.name))
    return children
