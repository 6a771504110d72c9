"""The write path over real HTTP (gunicorn, 8 clients) while the external system takes seconds per call.

Creates and updates of schools through the REST API, with the simulator at the original
system's latencies (5 s per school call) and the sync worker pushing in the background,
side by side with the same endpoints calling the external API before they answer.
"""

import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import httpx

from tests.benchmarks import harness

CLIENTS = 8
WRITES_PER_CLIENT = 200  # each client alternates create and update
SYNCHRONOUS_WRITES_PER_CLIENT = 4  # at 5 s a call, enough to see it


def main() -> dict:
    harness.fresh_database()
    harness.setup_django()
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    from tests.helpers import running_simulator

    token = Token.objects.create(user=get_user_model().objects.create_superuser("bench", password=None)).key
    results = {"clients": CLIENTS}
    with running_simulator() as (simulator, url):
        simulator.configure(latency_scale=1.0)
        outbox = [
            harness.gunicorn(port := harness.free_port(), workers=3),
            harness.celery_worker("sync", "sync", SYNC_API_URL=url),
        ]
        with harness.processes(*outbox):
            results["outbox"] = _load(port, token, WRITES_PER_CLIENT, "outbox")
            # The same writes from one client: the service time, without 8 clients queueing for 2 cores.
            results["outbox_one_client"] = _load(port, token, WRITES_PER_CLIENT, "single", clients=1)
        baseline_port = harness.free_port()
        synchronous = (
            "gunicorn-synchronous",
            [
                "-m",
                "gunicorn",
                "tests.benchmarks.synchronous_wsgi",
                "--bind",
                f"127.0.0.1:{baseline_port}",
                "--workers",
                "3",
                "--timeout",
                "120",
                "--access-logfile",
                "/dev/null",
            ],
            "Booting worker",
            {"SYNC_API_URL": url},
        )
        with harness.processes(synchronous):
            results["synchronous"] = _load(baseline_port, token, SYNCHRONOUS_WRITES_PER_CLIENT, "sync")
    results["speedup_p50"] = results["synchronous"]["latency_ms"]["p50"] / results["outbox"]["latency_ms"]["p50"]
    return results


def _load(port: int, token: str, writes_per_client: int, label: str, clients: int = CLIENTS) -> dict:
    latencies: list[float] = []
    lock = threading.Lock()

    def client(number: int) -> None:
        headers = {"Authorization": f"Token {token}"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=120) as http:
            school_id = None
            for write in range(writes_per_client):
                started = time.perf_counter()
                if school_id is None or write % 2 == 0:
                    response = http.post("/api/schools/", json={"name": f"{label} {number}-{write}"})
                    school_id = response.json()["id"]
                else:
                    response = http.patch(f"/api/schools/{school_id}/", json={"address": f"Road {write}"})
                elapsed = time.perf_counter() - started
                if response.status_code not in (200, 201):
                    raise RuntimeError(f"{response.status_code}: {response.text[:300]}")
                with lock:
                    latencies.append(elapsed * 1000)

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    elapsed = time.perf_counter() - started
    return {
        "requests": len(latencies),
        "seconds": elapsed,
        "requests_per_second": len(latencies) / elapsed,
        "latency_ms": harness.summary(latencies),
    }


def report(results: dict) -> str:
    lines = [
        f"| write path ({results['clients']} clients, external system 5 s per call) | requests | requests/s "
        "| p50 | p99 |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, key in (
        ("outbox: answer after commit, push in the background", "outbox"),
        ("outbox, 1 client: the service time, nothing queued", "outbox_one_client"),
        ("synchronous: call the external API before answering", "synchronous"),
    ):
        row = results.get(key)
        if row is None:
            continue
        lines.append(
            f"| {label} | {row['requests']:,} | {row['requests_per_second']:,.1f} | "
            f"{row['latency_ms']['p50']:,.1f} ms | {row['latency_ms']['p99']:,.1f} ms |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    outcome = main()
    path = harness.write_results("write", outcome)
    print(report(outcome))  # noqa: T201
    print(f"\n(results in {path.relative_to(harness.BASE_DIR)})")  # noqa: T201
