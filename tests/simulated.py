"""Test helpers: the external simulator served from a thread, and polling with a deadline."""

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sync.simulator import ExternalSimulator, SimulatorServer

POLL_INTERVAL_SECONDS = 0.05


@contextmanager
def running_simulator(**options) -> Iterator[tuple[ExternalSimulator, str]]:
    simulator = ExternalSimulator(latency_scale=0, **options)
    server = SimulatorServer(("127.0.0.1", 0), simulator)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield simulator, server.url
    finally:
        server.shutdown()
        server.server_close()


def wait_until(
    condition: Callable[[], object], *, timeout: float, message: str, every: Callable[[], object] | None = None
):
    """Poll until condition() is truthy; fail with message at the deadline. every() runs each round."""
    deadline = time.monotonic() + timeout
    while True:
        if every is not None:
            every()
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s: {message}")
        time.sleep(POLL_INTERVAL_SECONDS)
