"""School lanes against one global lane, on PostgreSQL and RabbitMQ, with an external system of 1-5 s per call (scaled).

The same term-start workload in each mode: SCHOOLS schools, each with a grade and a class,
STUDENTS students per school and MOVES students moved to another school; written while the
sync worker runs, timed from the first write to the last entry delivered. One sync worker
with --concurrency 1 for the global lane; one with --concurrency WORKER_CONCURRENCY for
school lanes. The simulator checks every lane's order over every slot.
"""

import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.benchmarks import harness

SCHOOLS = 8
STUDENTS = 25
MOVES = 16
WORKER_CONCURRENCY = 4
LATENCY_SCALE = float(os.environ.get("BENCH_LANES_LATENCY_SCALE", "0.05"))  # students 50 ms, schools 250 ms


def main() -> dict:
    results: dict = {"latency_scale": LATENCY_SCALE, "concurrency": WORKER_CONCURRENCY, "modes": []}
    for mode, concurrency in (("global", 1), ("school", WORKER_CONCURRENCY)):
        harness.fresh_database()
        harness.setup_django()
        results["modes"].append(_run(mode, concurrency))
    global_rate, school_rate = (mode["entries_per_second"] for mode in results["modes"])
    results["speedup"] = school_rate / global_rate
    return results


def _run(mode: str, concurrency: int) -> dict:
    from django.conf import settings

    from schools.services import grade_create, record_update, school_class_create, school_create, student_create
    from sync.models import EntryStatus, OperationLog
    from tests.helpers import running_simulator

    settings.SYNC_LANES = mode
    rng = random.Random(1)
    with running_simulator() as (simulator, url):
        simulator.configure(latency_scale=LATENCY_SCALE)
        worker = harness.celery_worker("sync", "sync", concurrency, SYNC_API_URL=url, SYNC_LANES=mode)
        with harness.processes(worker):
            started = time.time()
            classes = []
            for number in range(SCHOOLS):
                school = school_create(name=f"Lane bench school {number}")
                grade = grade_create(school=school, level=1, name="Grade 1")
                classes.append(school_class_create(grade=grade, name="1A"))
            students = [
                student_create(
                    school_class=school_class, first_name="S", last_name=str(index), student_number=f"{index}"
                )
                for school_class in classes
                for index in range(STUDENTS)
            ]
            for student in rng.sample(students, MOVES):
                target = rng.choice([c for c in classes if c.pk != student.school_class_id])
                record_update(instance=student, data={"school_class": target})
            written = time.time()
            harness.wait_until(
                lambda: not OperationLog.objects.exclude(status=EntryStatus.SUCCEEDED).exists(), 3600, every=0.1
            )
            elapsed = time.time() - started
        stats = simulator.stats()
    assert stats["out_of_order"] == 0, stats
    assert stats["max_in_flight_per_lane"] == 1, stats
    entries = OperationLog.objects.count()
    return {
        "mode": mode,
        "sync_worker_concurrency": concurrency,
        "entries": entries,
        "writes_seconds": written - started,
        "seconds": elapsed,
        "entries_per_second": entries / elapsed,
        "max_in_flight": stats["max_in_flight"],
        "lanes": stats["lanes"],
    }


def report(results: dict) -> str:
    lines = [
        f"| term start ({SCHOOLS} schools, {MOVES} moves; calls at {results['latency_scale']:g} x 1-5 s) "
        "| sync worker | entries | seconds | entries/s | calls in flight (max) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for mode in results["modes"]:
        lines.append(
            f"| {mode['mode']} lane{'s' if mode['mode'] == 'school' else ''} | --concurrency "
            f"{mode['sync_worker_concurrency']} | {mode['entries']:,} | {mode['seconds']:.1f} | "
            f"{mode['entries_per_second']:.1f} | {mode['max_in_flight']} |"
        )
    lines += ["", f"- school lanes deliver {results['speedup']:.2f} x as many entries per second as the global lane"]
    return "\n".join(lines)


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    outcome = main()
    harness.write_results("lanes", outcome)
    print(report(outcome))  # noqa: T201
