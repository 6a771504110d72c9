"""The floor of the efficiency measurement: N pushes made back to back by the project's HTTP client.

No database, no broker, no Celery: unsaved entries sent by sync.client.ExternalApiClient to
the simulator, so the pipeline's time can be compared with the calls' own.
Usage: python -m tests.benchmarks.bare_calls URL COUNT  (prints the seconds taken)
"""

import os
import sys
import time
import uuid

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


def main(url: str, count: int) -> float:
    import django

    django.setup()
    from sync.client import ExternalApiClient
    from sync.models import DEFAULT_LANE, Operation, OperationLog, Resource

    client = ExternalApiClient(base_url=url, token="", timeout=30)
    # Sequences far above the pipeline's, on a simulator that is otherwise idle.
    entries = [
        OperationLog(
            lane_id=DEFAULT_LANE,
            sequence=10**9 + number,
            operation=Operation.CREATE,
            resource=Resource.SCHOOLS,
            object_id=10**9 + number,
            payload={"id": 10**9 + number, "name": f"Bare call {number}"},
            idempotency_key=uuid.uuid4(),
        )
        for number in range(count)
    ]
    started = time.perf_counter()
    for entry in entries:
        if not client.push(entry).ok:
            raise RuntimeError("a bare call failed")
    return time.perf_counter() - started


if __name__ == "__main__":
    print(main(sys.argv[1], int(sys.argv[2])))  # noqa: T201
