"""The write path over real HTTP (gunicorn, 8 clients) while the external system takes seconds per call.

Creates and updates of schools through the REST API, with the simulator at the original
system's latencies (5 s per school call) and the sync worker pushing in the background,
side by side with the same endpoints calling the external API before they answer; and
10,000 students created by 8 clients, to see whether writes slow down as the tables grow
(the first thousand against the last).
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
STUDENTS = 10_000  # created by CLIENTS clients for the flatness measurement
THOUSAND = 1_000


def main() -> dict:
    harness.fresh_database()
    harness.setup_django()
    from django.contrib.auth import get_user_model
    from knox.models import AuthToken

    from tests.helpers import running_simulator

    _, token = AuthToken.objects.create(user=get_user_model().objects.create_superuser("bench", password=None))
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
            results["students"] = _students(port, token)
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


def _students(port: int, token: str) -> dict:
    """STUDENTS creates from CLIENTS clients; the rate of the first and the last thousand."""
    headers = {"Authorization": f"Token {token}"}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=120) as http:
        school = http.post("/api/schools/", json={"name": "Flatness"}).json()["id"]
        grade = http.post("/api/grades/", json={"school": school, "level": 1, "name": "One"}).json()["id"]
        school_class = http.post("/api/classes/", json={"grade": grade, "name": "1A"}).json()["id"]
    finished: list[float] = []
    latencies: list[float] = []
    lock = threading.Lock()

    def client(number: int) -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=120) as http:
            for index in range(number, STUDENTS, CLIENTS):
                started = time.perf_counter()
                response = http.post(
                    "/api/students/",
                    json={
                        "school_class": school_class,
                        "first_name": "S",
                        "last_name": f"{index}",
                        "student_number": f"S{index:06d}",
                    },
                )
                if response.status_code != 201:
                    raise RuntimeError(f"{response.status_code}: {response.text[:300]}")
                with lock:
                    finished.append(time.perf_counter())
                    latencies.append((finished[-1] - started) * 1000)

    started = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(client, range(CLIENTS)))
    finished.sort()
    first = THOUSAND / (finished[THOUSAND - 1] - started)
    last = THOUSAND / (finished[-1] - finished[-THOUSAND - 1])
    return {
        "students": STUDENTS,
        "first_thousand_per_second": first,
        "last_thousand_per_second": last,
        "last_to_first": last / first,
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
    students = results.get("students")
    if students:
        lines += [
            "",
            f"- {students['students']:,} students from {results['clients']} clients: "
            f"{students['first_thousand_per_second']:.0f}/s for the first thousand, "
            f"{students['last_thousand_per_second']:.0f}/s for the last ({students['last_to_first']:.2f} x); "
            f"p50 {students['latency_ms']['p50']:.1f} ms, p99 {students['latency_ms']['p99']:.1f} ms",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    outcome = main()
    path = harness.write_results("write", outcome)
    print(report(outcome))  # noqa: T201
    print(f"\n(results in {path.relative_to(harness.BASE_DIR)})")  # noqa: T201
