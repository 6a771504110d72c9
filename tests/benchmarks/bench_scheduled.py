"""Scheduled changes at scale, on PostgreSQL and RabbitMQ: create, cancel and execute rates.

100,000 changes are created through the API and cancelled through it; then due changes
are executed by two default workers, each through the services with its OperationLog
entry, once as a burst (throughput) and once spread over time (lateness).
"""

import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import httpx

from tests.benchmarks import harness

TOTAL = 100_000
BATCH = 500  # changes per create request
CANCEL_BATCH = 1000  # ids per cancel request
BENCH_USER = "bench"
CLIENTS = 4  # concurrent HTTP clients for the batch calls
SINGLE_REQUESTS = 2_000  # one change per request, for comparison
SINGLE_CLIENTS = 8
TARGET_SCHOOLS = 500
BURST = 20_000  # changes due at one instant
SPREAD = 10_000  # changes due evenly over SPREAD_SECONDS
SPREAD_SECONDS = 100
LEAD_SECONDS = 55  # time to schedule a run before it starts (within the 60 s wake-up horizon)

# A dedicated deferred-task service's published figures (small cloud VM, managed MySQL).
REFERENCE = {"creates_per_second": 1396, "cancels_per_second": 1920}


def main() -> dict:
    harness.fresh_database()
    harness.setup_django()
    from knox.models import AuthToken

    from schools.models import School
    from schools.services import school_create

    _, token = AuthToken.objects.create(user=_superuser())
    schools = [school_create(name=f"Bench school {n}").pk for n in range(TARGET_SCHOOLS)]
    assert School.objects.count() == TARGET_SCHOOLS
    port = harness.free_port()
    results = {"total": TOTAL, "reference": REFERENCE}

    with harness.processes(harness.gunicorn(port, workers=3)):
        client_args = {"base_url": f"http://127.0.0.1:{port}", "headers": {"Authorization": f"Token {token}"}}
        far = datetime.now(UTC) + timedelta(days=1)

        def change(number: int, when: datetime) -> dict:
            return {
                "execute_at": when.isoformat(),
                "resource": "schools",
                "operation": "update",
                "target_id": schools[number % len(schools)],
                "data": {"address": f"Address {number}"},
            }

        # Creates, in batches, from concurrent clients.
        batches = [[change(n, far) for n in range(start, start + BATCH)] for start in range(0, TOTAL, BATCH)]
        ids: list[str] = []
        started = time.perf_counter()
        with ThreadPoolExecutor(CLIENTS) as pool:
            for created in pool.map(lambda batch: _post(client_args, "/api/scheduled-changes/", batch), batches):
                ids.extend(item["id"] for item in created)
        elapsed = time.perf_counter() - started
        results["create_batched"] = {"changes": len(ids), "seconds": elapsed, "per_second": len(ids) / elapsed}

        # Cancels, in batches.
        chunks = [ids[start : start + CANCEL_BATCH] for start in range(0, len(ids), CANCEL_BATCH)]
        started = time.perf_counter()
        with ThreadPoolExecutor(CLIENTS) as pool:
            cancelled = sum(
                len(result["cancelled"])
                for result in pool.map(
                    lambda chunk: _post(client_args, "/api/scheduled-changes/cancel/", {"ids": chunk}, 200), chunks
                )
            )
        elapsed = time.perf_counter() - started
        results["cancel_batched"] = {"changes": cancelled, "seconds": elapsed, "per_second": cancelled / elapsed}

        # One change per request, as a client without batching would do.
        started = time.perf_counter()
        with ThreadPoolExecutor(SINGLE_CLIENTS) as pool:
            single_ids = [
                item["id"]
                for item in pool.map(
                    lambda n: _post(client_args, "/api/scheduled-changes/", change(n, far)), range(SINGLE_REQUESTS)
                )
            ]
        elapsed = time.perf_counter() - started
        results["create_single"] = {
            "changes": SINGLE_REQUESTS,
            "seconds": elapsed,
            "per_second": SINGLE_REQUESTS / elapsed,
        }
        started = time.perf_counter()
        with ThreadPoolExecutor(SINGLE_CLIENTS) as pool:
            list(pool.map(lambda change_id: _delete(client_args, change_id), single_ids))
        elapsed = time.perf_counter() - started
        results["cancel_single"] = {
            "changes": SINGLE_REQUESTS,
            "seconds": elapsed,
            "per_second": SINGLE_REQUESTS / elapsed,
        }

    results["execute_burst"] = _execute(schools, BURST, spread_seconds=0)
    results["execute_spread"] = _execute(schools, SPREAD, spread_seconds=SPREAD_SECONDS)
    return results


def _execute(schools: list[int], count: int, spread_seconds: float) -> dict:
    """Schedule `count` changes due over `spread_seconds` from a moment ahead, and time their runs."""
    from django.contrib.auth import get_user_model

    from schools.scheduling import runner, services
    from schools.scheduling.models import ScheduledChange, ScheduledChangeStatus
    from sync.models import OperationLog

    ScheduledChange.objects.all().delete()
    entries_before = OperationLog.objects.count()
    start_at = datetime.now(UTC) + timedelta(seconds=LEAD_SECONDS)
    step = spread_seconds / count
    changes = [
        {
            "execute_at": start_at + timedelta(seconds=n * step),
            "resource": "schools",
            "operation": "update",
            "target_id": schools[n % len(schools)],
            "data": {"address": f"Run {count} {n}"},
        }
        for n in range(count)
    ]
    actor = get_user_model().objects.get(username=BENCH_USER)
    for start in range(0, count, 1000):
        services.scheduled_changes_create(changes[start : start + 1000], actor=actor)
    assert datetime.now(UTC) < start_at, "scheduling took longer than the lead time"
    workers = [harness.celery_worker(f"default-{n}", "default") for n in range(2)]
    with harness.processes(*workers):
        runner.sweep()  # as beat does every 5 s: wake-ups for what comes due
        harness.wait_until(
            lambda: ScheduledChange.objects.filter(status=ScheduledChangeStatus.DONE).count() == count,
            timeout=1800,
            every=1,
        )
    rows = list(ScheduledChange.objects.values_list("execute_at", "finished_at", "status"))
    assert all(status == ScheduledChangeStatus.DONE for _, _, status in rows)
    lateness = [(finished - execute_at).total_seconds() for execute_at, finished, _ in rows]
    first_due = min(execute_at for execute_at, _, _ in rows)
    last_done = max(finished for _, finished, _ in rows)
    elapsed = (last_done - first_due).total_seconds()
    return {
        "changes": count,
        "spread_seconds": spread_seconds,
        "seconds": elapsed,
        "per_second": count / elapsed,
        "operation_log_entries": OperationLog.objects.count() - entries_before,
        "lateness_seconds": harness.summary(lateness),
    }


def _superuser():
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_superuser(BENCH_USER, password=None)


_clients = threading.local()


def _client(client_args: dict) -> httpx.Client:
    """One keep-alive client per thread, as a real API client would hold."""
    if not hasattr(_clients, "client"):
        _clients.client = httpx.Client(timeout=300, **client_args)
    return _clients.client


def _post(client_args: dict, path: str, body, expected: int = 201):
    response = _client(client_args).post(path, json=body)
    if response.status_code != expected:
        raise RuntimeError(f"{path}: {response.status_code} {response.text[:500]}")
    return response.json()


def _delete(client_args: dict, change_id: str) -> None:
    response = _client(client_args).delete(f"/api/scheduled-changes/{change_id}/")
    if response.status_code != 204:
        raise RuntimeError(f"cancel: {response.status_code} {response.text[:500]}")


def report(results: dict) -> str:
    reference = results["reference"]
    rows = [
        ("create, batches of 500", results["create_batched"], reference["creates_per_second"]),
        ("cancel, batches of 1,000", results["cancel_batched"], reference["cancels_per_second"]),
        ("create, one per request", results["create_single"], reference["creates_per_second"]),
        ("cancel, one per request", results["cancel_single"], reference["cancels_per_second"]),
    ]
    lines = [
        "| scheduled changes | count | per second | vs. reference service |",
        "|---|---:|---:|---:|",
    ]
    for label, result, ref in rows:
        lines.append(
            f"| {label} | {result['changes']:,} | {result['per_second']:,.0f} | {result['per_second'] / ref:.2f}x |"
        )
    for label, key in (("execute, burst", "execute_burst"), ("execute, spread", "execute_spread")):
        result = results[key]
        lateness = result["lateness_seconds"]
        lines.append(
            f"| {label} ({result['changes']:,} due over {result['spread_seconds']} s) | {result['changes']:,} | "
            f"{result['per_second']:,.0f} | lateness p50 {lateness['p50'] * 1000:,.0f} ms, "
            f"p99 {lateness['p99'] * 1000:,.0f} ms |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    outcome = main()
    path = harness.write_results("scheduled", outcome)
    print(report(outcome))  # noqa: T201
    print(f"\n(results in {path.relative_to(harness.BASE_DIR)})")  # noqa: T201
