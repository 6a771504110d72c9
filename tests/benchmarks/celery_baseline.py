"""The floor of Celery's own overhead: one no-op task per ordered step, in bounded chains.

Same broker, serializer, acks and prefetch settings as the project (its Django settings),
chains of CHAIN_LENGTH no-op tasks, each chain ending in a task that starts the next one:
the shape push(e1) | … | push(eK) | dispatch(lane) would have with one entry per link and
no database or HTTP. The dispatcher pushes a run of entries per link, so it can beat this.
"""

import os
import time

import redis
from celery import Celery, chain
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

QUEUE = "baseline"
CHAIN_LENGTH = 100  # sync.dispatcher.CHAIN_LENGTH
DONE_KEY = "bench:baseline:done"
REDIS_URL = "redis://127.0.0.1:6379/14"

app = Celery("baseline", set_as_current=False)  # the project app stays current in the bench
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = [Queue(QUEUE)]
app.conf.task_default_queue = QUEUE
app.conf.task_routes = {}


@app.task(name="baseline.noop")
def noop() -> None:
    return None


@app.task(name="baseline.next_chain")
def next_chain(remaining: int) -> None:
    if remaining <= 0:
        redis.Redis.from_url(REDIS_URL).set(DONE_KEY, time.time())
        return
    links = min(CHAIN_LENGTH, remaining)
    chain(*(noop.si() for _ in range(links)), next_chain.si(remaining - links)).apply_async()
