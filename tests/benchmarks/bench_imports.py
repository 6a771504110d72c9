"""Imports against the REST API: students written per second by one import (preview, then the background
write) and by 8 clients creating the same students one request at a time, in the same run."""

import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import httpx

from tests.benchmarks import harness

SIZES = [1_000, 5_000]
CLIENTS = 8
CLASSES = ["1A", "1B", "1C", "1D"]


def main() -> dict:
    harness.fresh_database()
    harness.setup_django()
    from django.contrib.auth import get_user_model
    from knox.models import AuthToken

    _, token = AuthToken.objects.create(user=get_user_model().objects.create_superuser("bench", password=None))
    port = harness.free_port()
    results: dict = {"clients": CLIENTS, "sizes": []}
    headers = {"Authorization": f"Token {token}"}
    with (
        harness.processes(harness.gunicorn(port, workers=3), harness.celery_worker("default", "default")),
        httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=600) as http,
    ):
        for size in SIZES:
            imported = _import(http, size)
            one_by_one = _rest(port, token, size)
            results["sizes"].append(
                {
                    "rows": size,
                    **imported,
                    "rest_rows_per_second": one_by_one,
                    "import_to_rest": imported["rows_per_second"] / one_by_one,
                }
            )
    return results


def _school(http: httpx.Client, name: str) -> int:
    school = http.post("/api/schools/", json={"name": name}).json()["id"]
    grade = http.post("/api/grades/", json={"school": school, "level": 1, "name": "One"}).json()["id"]
    for class_name in CLASSES:
        http.post("/api/classes/", json={"grade": grade, "name": class_name}).raise_for_status()
    return school


def _import(http: httpx.Client, size: int) -> dict:
    school = _school(http, f"Import {size}")
    text = "student_number,first_name,last_name,grade,class\n" + "".join(
        f"N{n:06d},First,Last{n},1,{CLASSES[n % len(CLASSES)]}\n" for n in range(size)
    )
    files = {"file": ("students.csv", text.encode(), "text/csv")}
    form = {"kind": "students", "school": str(school)}
    started = time.perf_counter()
    preview = http.post("/api/imports/", data={**form, "dry_run": "true"}, files=files)
    preview.raise_for_status()
    previewed = time.perf_counter()
    queued = http.post("/api/imports/", data=form, files=files)
    if queued.status_code != 202:
        raise RuntimeError(f"{queued.status_code}: {queued.text[:300]}")
    import_id = queued.json()["id"]

    def done() -> bool:
        status = http.get(f"/api/imports/{import_id}/").json()["status"]
        if status == "failed":
            raise RuntimeError(http.get(f"/api/imports/{import_id}/").text[:500])
        return status == "done"

    harness.wait_until(done, timeout=1800, every=0.2)
    finished = time.perf_counter()
    return {
        "preview_seconds": previewed - started,
        "import_seconds": finished - started,
        "rows_per_second": size / (finished - started),
    }


def _rest(port: int, token: str, size: int) -> float:
    headers = {"Authorization": f"Token {token}"}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=120) as http:
        school = _school(http, f"REST {size}")
        classes = [c["id"] for c in http.get("/api/classes/", params={"school": school}).json()["results"]]
    lock = threading.Lock()
    created = [0]

    def client(number: int) -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=120) as http:
            for index in range(number, size, CLIENTS):
                response = http.post(
                    "/api/students/",
                    json={
                        "school_class": classes[index % len(classes)],
                        "first_name": "First",
                        "last_name": f"Last{index}",
                        "student_number": f"N{index:06d}",
                    },
                )
                if response.status_code != 201:
                    raise RuntimeError(f"{response.status_code}: {response.text[:300]}")
                with lock:
                    created[0] += 1

    started = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(client, range(CLIENTS)))
    return created[0] / (time.perf_counter() - started)


def report(results: dict) -> str:
    lines = [
        f"| students | import: preview + write, s | import rows/s | REST one by one, {results['clients']} clients, "
        "rows/s | import ÷ REST |",
        "|---:|---:|---:|---:|---:|",
    ]
    for row in results["sizes"]:
        lines.append(
            f"| {row['rows']:,} | {row['preview_seconds']:.1f} + {row['import_seconds'] - row['preview_seconds']:.1f} "
            f"| {row['rows_per_second']:,.0f} | {row['rest_rows_per_second']:,.0f} | {row['import_to_rest']:.2f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    outcome = main()
    path = harness.write_results("imports", outcome)
    print(report(outcome))  # noqa: T201
    print(f"\n(results in {path.relative_to(harness.BASE_DIR)})")  # noqa: T201
