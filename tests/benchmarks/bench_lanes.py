"""School lanes, on PostgreSQL and RabbitMQ, against an external system of 100 ms per call.

- pushes/s with 1, 4 and 16 schools each holding a backlog, one sync worker with 16 slots
  (--concurrency 16), against the ideal (schools / 0.1 s); the global lane (one slot) with
  the 4-school backlog in the same run as the baseline;
- a quiet school's idle lag (commit to external receipt) while another school drains a
  backlog of 5,000 entries;
- writes from 8 clients spread over 8 schools through the REST API, school lanes against
  the global lane;
- the sync worker's memory at 16 slots (the main process and its children).
"""

import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import httpx

from tests.benchmarks import harness

CALL_SECONDS = 0.1
SLOTS = 16
SCHOOL_COUNTS = (1, 4, 16)
BACKLOG_PER_SCHOOL = int(os.environ.get("BENCH_LANES_BACKLOG", "60"))
DRAINING = 5_000
QUIET_SAMPLES = 40
CLIENTS = 8
WRITES_PER_CLIENT = 100
OUTBOX_TABLES = ("sync_operationlog", "sync_synclane", "sync_operationattempt", "sync_operationslot")


def main() -> dict:
    harness.fresh_database()
    harness.setup_django()
    from django.conf import settings
    from django.db import connection

    from tests.helpers import running_simulator

    settings.SYNC_LANES = "school"
    results: dict = {"call_seconds": CALL_SECONDS, "slots": SLOTS, "backlog_per_school": BACKLOG_PER_SCHOOL}
    with running_simulator() as (simulator, url):
        simulator.configure(latency_scale=CALL_SECONDS)  # students: 1 s x 0.1
        school_worker = harness.celery_worker("sync-lanes", "sync", SLOTS, SYNC_API_URL=url, SYNC_LANES="school")
        global_worker = harness.celery_worker("sync-global", "sync", 1, SYNC_API_URL=url, SYNC_LANES="global")
        with harness.processes(school_worker) as (worker,):
            results["parallel"] = [_drain(schools) for schools in SCHOOL_COUNTS]
            results["quiet_lag_ms"] = _quiet_lag(simulator)
            results["memory_mib"] = harness.rss(worker.pid) / 2**20
        assert simulator.stats()["out_of_order"] == 0
        assert simulator.stats()["max_in_flight_per_lane"] == 1
        settings.SYNC_LANES = "global"
        with harness.processes(global_worker):
            results["global_baseline"] = _drain(4, lane_mode="global")
        # Each write load on a fresh database: a backlog left in one mode would be a mode switch
        # for the next (its writes would hold slots behind it). Without a sync worker: the write
        # path alone, without the pushes of eight lanes at once competing for the two cores.
        for key, deliver in (("writes", True), ("writes_alone", False)):
            results[key] = {}
            for mode in ("global", "school"):
                connection.close()
                harness.fresh_database()
                results[key][mode] = _writes(url, mode, deliver=deliver)
    return results


def _backlog(lane: str, count: int) -> None:
    """`count` student creates written straight into a lane (no records behind them)."""
    from tests.helpers import bulk_entries

    bulk_entries(count, lane_name=lane, resource="students")


def _drain(schools: int, lane_mode: str = "school") -> dict:
    """Seconds from kicking `schools` lanes with a backlog each to the last entry delivered."""
    from django.db.models import Max

    from sync.models import DEFAULT_LANE, EntryStatus, OperationLog
    from sync.wakeup import kick

    lanes = [f"school-bench-{schools}-{index}" for index in range(schools)] if lane_mode == "school" else [DEFAULT_LANE]
    for lane in lanes:
        _backlog(lane, BACKLOG_PER_SCHOOL * (schools if lane_mode == "global" else 1))
    harness.vacuum(*OUTBOX_TABLES)
    entries = OperationLog.objects.filter(lane_id__in=lanes)
    started = time.time()
    for lane in lanes:
        kick(lane)
    harness.wait_until(lambda: not entries.exclude(status=EntryStatus.SUCCEEDED).exists(), 3600, every=0.05)
    elapsed = entries.aggregate(last=Max("pushed_at"))["last"].timestamp() - started
    count = BACKLOG_PER_SCHOOL * schools
    ideal = (schools if lane_mode == "school" else 1) / CALL_SECONDS
    return {
        "schools": schools,
        "lanes": lane_mode,
        "entries": count,
        "seconds": elapsed,
        "pushes_per_second": count / elapsed,
        "ideal_per_second": ideal,
        "of_ideal": count / elapsed / ideal,
    }


def _quiet_lag(simulator) -> dict:
    """Commit-to-receipt lag of single writes to a quiet school while another drains DRAINING entries."""
    from django.db import transaction

    from schools.services import grade_create, school_class_create, school_create, student_create
    from sync.models import EntryStatus, OperationLog
    from sync.wakeup import kick

    school = school_create(name="Quiet")
    school_class = school_class_create(grade=grade_create(school=school, level=1, name="1"), name="1A")
    quiet = OperationLog.objects.filter(lane_id=f"school-{school.pk}")
    harness.wait_until(lambda: not quiet.exclude(status=EntryStatus.SUCCEEDED).exists(), 60)
    busy = "school-bench-draining"
    _backlog(busy, DRAINING)
    kick(busy)
    harness.wait_until(lambda: OperationLog.objects.filter(lane_id=busy, status=EntryStatus.SUCCEEDED).exists(), 60)
    lags = []
    for number in range(QUIET_SAMPLES):
        committed: list[float] = []
        with transaction.atomic():
            transaction.on_commit(lambda stamps=committed: stamps.append(time.time()))  # runs before the kick
            student = student_create(
                school_class=school_class, first_name="Q", last_name="S", student_number=f"{number}"
            )
        key = str(quiet.get(resource="students", object_id=student.pk).idempotency_key)
        harness.wait_until(lambda key=key: any(item["key"] == key for item in simulator.applied[-50:]), 60, every=0.002)
        received = next(item["received_at"] for item in reversed(simulator.applied) if item["key"] == key)
        lags.append((received - committed[0]) * 1000)
        time.sleep(0.2)  # the quiet lane is idle again before the next write
    pending = OperationLog.objects.filter(lane_id=busy, status=EntryStatus.PENDING)
    still_draining = pending.count()
    pending.update(status=EntryStatus.CANCELLED)
    return {**harness.summary(lags), "busy_lane_still_pending": still_draining}


def _writes(url: str, mode: str, deliver: bool) -> dict:
    """CLIENTS clients creating students, client i in school i, via gunicorn in `mode`; a sync worker if `deliver`."""
    from django.contrib.auth import get_user_model
    from knox.models import AuthToken

    user, _ = get_user_model().objects.get_or_create(username="bench", defaults={"is_superuser": True})
    _, token = AuthToken.objects.create(user=user)
    env = {"SYNC_LANES": mode, "SYNC_API_URL": url}
    web = harness.gunicorn(port := harness.free_port(), workers=3)
    web = (web[0], web[1], web[2], env)
    latencies: list[float] = []
    lock = threading.Lock()
    headers = {"Authorization": f"Token {token}"}
    sync_worker = harness.celery_worker(f"sync-{mode}", "sync", SLOTS if mode == "school" else 1, **env)
    with harness.processes(web, *([sync_worker] if deliver else [])):
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=120) as http:
            classes = []
            for number in range(CLIENTS):
                school = http.post("/api/schools/", json={"name": f"Writes {mode} {deliver} {number}"}).json()["id"]
                grade = http.post("/api/grades/", json={"school": school, "level": 1, "name": "1"}).json()["id"]
                classes.append(http.post("/api/classes/", json={"grade": grade, "name": "1A"}).json()["id"])

        def client(number: int) -> None:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=120) as http:
                for index in range(WRITES_PER_CLIENT):
                    body = {"school_class": classes[number], "first_name": "S", "last_name": str(index)}
                    started = time.perf_counter()
                    student_number = f"{mode}-{deliver:d}-{index}"
                    response = http.post("/api/students/", json={**body, "student_number": student_number})
                    if response.status_code != 201:
                        raise RuntimeError(f"{response.status_code}: {response.text[:300]}")
                    with lock:
                        latencies.append((time.perf_counter() - started) * 1000)

        started = time.perf_counter()
        with ThreadPoolExecutor(CLIENTS) as pool:
            list(pool.map(client, range(CLIENTS)))
        elapsed = time.perf_counter() - started
    return {"requests": len(latencies), "writes_per_second": len(latencies) / elapsed, **harness.summary(latencies)}


def report(results: dict) -> str:
    lines = [
        f"| backlog ({results['backlog_per_school']} per school, {results['call_seconds'] * 1000:.0f} ms per call) "
        "| lanes | entries | pushes/s | ideal/s | of ideal |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for row in [results["global_baseline"], *results["parallel"]]:
        label = f"{row['schools']} school{'s' if row['schools'] > 1 else ''}"
        slots = 1 if row["lanes"] == "global" else results["slots"]
        lines.append(
            f"| {label} | {row['lanes']} ({slots} slot{'s' if slots > 1 else ''}) | {row['entries']:,} "
            f"| {row['pushes_per_second']:.1f} | {row['ideal_per_second']:.0f} | {row['of_ideal']:.2f} |"
        )
    lag, call_ms = results["quiet_lag_ms"], results["call_seconds"] * 1000
    lines += [
        "",
        f"- a quiet school's lag while another drains {DRAINING:,} entries: p50 {lag['p50']:.0f} ms, "
        f"p99 {lag['p99']:.0f} ms ({lag['p99'] / call_ms:.1f} x the call time)",
    ]
    for key, label in (("writes", "while delivering"), ("writes_alone", "with no sync worker")):
        school, single = results[key]["school"], results[key]["global"]
        lines.append(
            f"- writes from {CLIENTS} clients over {CLIENTS} schools, {label}: school lanes "
            f"{school['writes_per_second']:.1f}/s (p50 {school['p50']:.1f} ms, p99 {school['p99']:.1f} ms), global "
            f"lane {single['writes_per_second']:.1f}/s (p50 {single['p50']:.1f} ms, p99 {single['p99']:.1f} ms): "
            f"{school['writes_per_second'] / single['writes_per_second']:.2f} x"
        )
    lines += [
        f"- sync worker at {results['slots']} slots: {results['memory_mib']:.0f} MiB resident, with its pool processes",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    outcome = main()
    harness.write_results("lanes", outcome)
    print(report(outcome))  # noqa: T201
