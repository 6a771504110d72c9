"""The push pipeline, on PostgreSQL and RabbitMQ, against a zero-latency (or 50 ms) external API.

- ordered pushes/s for backlogs of 100, 1,000 and 10,000 entries, side by side with the raw
  loop floor (tests/benchmarks/raw_loop.py: lock the head row, POST, mark it done, commit)
  and a plain Celery chain of no-op tasks (tests/benchmarks/celery_baseline.py), as ratios;
- the same backlogs written through the services while the sync worker is stopped (every
  write kicks the lane): the messages queued, the first push after the worker is ready,
  and pushes/s against the raw floor;
- idle lag: commit to the external API receiving the entry, with the lane idle;
- efficiency under latency: 200 entries at 50 ms per call, total time / (200 x 50 ms), and
  against the same 200 calls made back to back by the bare HTTP client (the calls' own floor);
- memory: the sync worker's RSS before and after all those pushes (over 30,000).
"""

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.benchmarks import harness

# BENCH_BACKLOGS=100,1000 and BENCH_REPEATS=1 make a shorter run.
BACKLOGS = tuple(int(size) for size in os.environ.get("BENCH_BACKLOGS", "100,1000,10000").split(","))
REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))  # each rate is the median of this many interleaved runs
IDLE_SAMPLES = 50
LATENCY_ENTRIES = 200
LATENCY_SECONDS = 0.05
SCHOOLS_LATENCY = 5.0  # the simulator's per-call latency for schools at scale 1
OUTBOX_TABLES = ("sync_operationlog", "sync_synclane", "sync_operationattempt")


def main() -> dict:
    harness.fresh_database()
    harness.setup_django()
    import redis

    from sync.runs import RUN_LENGTH
    from tests.benchmarks import celery_baseline
    from tests.helpers import running_simulator

    results: dict = {"pipeline": [], "chain_length": celery_baseline.CHAIN_LENGTH, "run_length": RUN_LENGTH}
    store = redis.Redis.from_url(celery_baseline.REDIS_URL)
    celery_baseline.app.control.purge()
    with running_simulator() as (simulator, url):
        sync_worker = harness.celery_worker("sync", "sync", SYNC_API_URL=url)
        baseline_worker = (
            "baseline",
            [
                "-m",
                "celery",
                "-A",
                "tests.benchmarks.celery_baseline",
                "worker",
                "-Q",
                "baseline",
                "--concurrency",
                "1",
                "--prefetch-multiplier",
                "1",
                "-n",
                "baseline@%h",
                "-l",
                "INFO",
                "--without-mingle",
                "--without-gossip",
            ],
            "ready.",
            {},
        )
        with harness.processes(sync_worker, baseline_worker) as (sync_process, _):
            _pushes(10)  # warm up connections and imports
            rss_before = harness.rss(sync_process.pid)
            for backlog in BACKLOGS:
                ours, raw, floor = [], [], []
                for _ in range(REPEATS):
                    ours.append(_pushes(backlog))
                    raw.append(_raw_loop(url, backlog))
                    floor.append(_baseline(store, backlog))
                results["pipeline"].append(
                    {
                        "backlog": backlog,
                        "pushes_per_second": statistics.median(ours),
                        "raw_loop_per_second": statistics.median(raw),
                        "ratio_to_raw_loop": statistics.median(ours) / statistics.median(raw),
                        "noop_chain_per_second": statistics.median(floor),
                        "ratio": statistics.median(ours) / statistics.median(floor),
                        "runs": {"pushes_per_second": ours, "raw_loop_per_second": raw, "noop_chain_per_second": floor},
                    }
                )
            rss_after = harness.rss(sync_process.pid)
            results["memory"] = {
                "rss_before_mib": rss_before / 2**20,
                "rss_after_mib": rss_after / 2**20,
                "pushes_between": REPEATS * sum(BACKLOGS),
                "growth": rss_after / rss_before - 1,
            }
        results["stopped_worker"] = [_written_while_stopped(sync_worker, url, backlog) for backlog in BACKLOGS]
        with harness.processes(sync_worker):
            # Last: the bare calls send sequences above all of the lane's, out of the lane's order.
            results["idle_lag_ms"] = _idle_lag(simulator)
            simulator.configure(latency_scale=LATENCY_SECONDS / SCHOOLS_LATENCY)
            elapsed = _elapsed_for(LATENCY_ENTRIES)
            bare = _bare_calls(url, LATENCY_ENTRIES)
            results["efficiency"] = {
                "entries": LATENCY_ENTRIES,
                "latency_ms": LATENCY_SECONDS * 1000,
                "seconds": elapsed,
                "ratio": elapsed / (LATENCY_ENTRIES * LATENCY_SECONDS),
                "bare_calls_seconds": bare,
                "ratio_to_bare_calls": elapsed / bare,
            }
        assert simulator.out_of_order == 0
        assert simulator.max_in_flight == 1
    return results


def _elapsed_for(count: int) -> float:
    """Seconds from the kick to the last of `count` new entries being pushed."""
    from django.db.models import Max

    from sync.models import DEFAULT_LANE, EntryStatus, OperationLog
    from sync.wakeup import kick
    from tests.helpers import bulk_entries

    bulk_entries(count)
    harness.vacuum(*OUTBOX_TABLES)
    started = time.time()
    kick(DEFAULT_LANE)
    harness.wait_until(lambda: not OperationLog.objects.filter(status=EntryStatus.PENDING).exists(), 3600, every=0.05)
    harness.wait_until(lambda: not OperationLog.objects.filter(status=EntryStatus.IN_PROGRESS).exists(), 60, every=0.05)
    last = OperationLog.objects.aggregate(last=Max("pushed_at"))["last"].timestamp()
    return last - started


def _bare_calls(url: str, count: int) -> float:
    """Seconds for the same calls made back to back by the project's HTTP client alone, in its own process."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.benchmarks.bare_calls", url, str(count)],
        cwd=harness.BASE_DIR,
        env={**harness.ENV, "SYNC_API_URL": url},
        check=True,
        capture_output=True,
        text=True,
    )
    return float(done.stdout.strip().splitlines()[-1])


def _pushes(count: int) -> float:
    return count / _elapsed_for(count)


def _raw_loop(url: str, count: int) -> float:
    """Pushes/s of the raw loop over `count` new entries, in a process of its own."""
    from tests.helpers import bulk_entries

    bulk_entries(count)
    harness.vacuum(*OUTBOX_TABLES)
    done = subprocess.run(
        [sys.executable, "-m", "tests.benchmarks.raw_loop", str(count)],
        cwd=harness.BASE_DIR,
        env={**harness.ENV, "SYNC_API_URL": url},
        check=True,
        capture_output=True,
        text=True,
    )
    return count / float(done.stdout.strip().splitlines()[-1])


def _written_while_stopped(sync_worker, url: str, count: int) -> dict:
    """`count` writes through the services with no sync worker running, then the worker starts."""
    from django.db.models import Max, Min

    from config.celery import app
    from schools.services import school_create
    from sync.models import EntryStatus, OperationLog

    first_new = (OperationLog.objects.aggregate(last=Max("pk"))["last"] or 0) + 1
    for number in range(count):
        school_create(name=f"Written while stopped {first_new}-{number}")
    harness.vacuum(*OUTBOX_TABLES)
    with app.connection_for_write() as connection:
        queued = connection.default_channel.queue_declare(queue="sync", passive=True).message_count
    backlog = OperationLog.objects.filter(pk__gte=first_new)
    with harness.processes(sync_worker):
        ready = time.time()
        harness.wait_until(lambda: not backlog.exclude(status=EntryStatus.SUCCEEDED).exists(), 3600, every=0.05)
    pushed = backlog.aggregate(first=Min("pushed_at"), last=Max("pushed_at"))
    rate = count / (pushed["last"].timestamp() - ready)
    raw = _raw_loop(url, count)
    return {
        "backlog": count,
        "messages_queued": queued,
        "first_push_after_ready_s": pushed["first"].timestamp() - ready,
        "pushes_per_second": rate,
        "raw_loop_per_second": raw,
        "ratio_to_raw_loop": rate / raw,
    }


def _baseline(store, count: int) -> float:
    from tests.benchmarks import celery_baseline

    store.delete(celery_baseline.DONE_KEY)
    started = time.time()
    celery_baseline.next_chain.apply_async((count,))
    harness.wait_until(lambda: store.get(celery_baseline.DONE_KEY) is not None, 3600, every=0.05)
    return count / (float(store.get(celery_baseline.DONE_KEY)) - started)


def _idle_lag(simulator) -> dict:
    """Commit to receipt by the external API, one write at a time on an idle lane."""
    from django.db import transaction

    from schools.services import school_create

    harness.vacuum(*OUTBOX_TABLES)
    lags = []
    for number in range(IDLE_SAMPLES):
        before = len(simulator.applied)
        committed: list[float] = []
        with transaction.atomic():
            transaction.on_commit(lambda stamps=committed: stamps.append(time.time()))  # runs before the kick
            school_create(name=f"Idle lag {number}")
        harness.wait_until(lambda count=before: len(simulator.applied) > count, 30, every=0.001)
        lags.append((simulator.applied[before]["received_at"] - committed[0]) * 1000)
        time.sleep(0.2)  # let the chain's tail finish: the lane is idle before the next write
    return harness.summary(lags)


def report(results: dict) -> str:
    lines = [
        f"| backlog | pushes/s ({results['run_length']} per link) | raw loop/s | ratio | no-op chain/s | ratio |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for row in results["pipeline"]:
        lines.append(
            f"| {row['backlog']:,} | {row['pushes_per_second']:,.0f} | {row['raw_loop_per_second']:,.0f} | "
            f"{row['ratio_to_raw_loop']:.2f} | {row['noop_chain_per_second']:,.0f} | {row['ratio']:.2f} |"
        )
    lines += [
        "",
        "Written while the sync worker was stopped (one write, one kick each):",
        "",
        "| backlog | messages queued | first push after ready | pushes/s | raw loop/s | ratio |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for row in results["stopped_worker"]:
        lines.append(
            f"| {row['backlog']:,} | {row['messages_queued']} | {row['first_push_after_ready_s'] * 1000:.0f} ms | "
            f"{row['pushes_per_second']:,.0f} | {row['raw_loop_per_second']:,.0f} | {row['ratio_to_raw_loop']:.2f} |"
        )
    lag, efficiency, memory = results["idle_lag_ms"], results["efficiency"], results["memory"]
    lines += [
        "",
        f"- idle lag, commit to external receipt: p50 {lag['p50']:.1f} ms, p99 {lag['p99']:.1f} ms",
        f"- efficiency at {efficiency['latency_ms']:.0f} ms per call: {efficiency['entries']} entries in "
        f"{efficiency['seconds']:.2f} s = {efficiency['ratio']:.3f} x {efficiency['entries']} x "
        f"{efficiency['latency_ms']:.0f} ms; the same calls back to back from the bare client took "
        f"{efficiency['bare_calls_seconds']:.2f} s ({efficiency['ratio_to_bare_calls']:.3f} x that)",
        f"- sync worker RSS: {memory['rss_before_mib']:.1f} MiB before, {memory['rss_after_mib']:.1f} MiB after "
        f"{memory['pushes_between']:,} pushes ({memory['growth']:+.1%})",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    outcome = main()
    path = harness.write_results("push", outcome)
    print(report(outcome))  # noqa: T201
    print(f"\n(results in {path.relative_to(harness.BASE_DIR)})")  # noqa: T201
