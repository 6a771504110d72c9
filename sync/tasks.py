"""Celery tasks: thin wrappers that take ids and call into sync/."""

from celery import shared_task
from celery.exceptions import Ignore

from sync import dispatcher, health, retention, runs


@shared_task(name="sync.dispatch")
def dispatch(lane: str, lease_token: str | None = None) -> None:
    dispatcher.dispatch_lane(lane, lease_token)


@shared_task(name="sync.push")
def push(entry_ids: list[int], lease_token: str) -> None:
    if not runs.push_run(entry_ids, lease_token).chain_goes_on:
        raise Ignore()  # ends the chain without running its remaining links


@shared_task(name="sync.sweep")
def sweep() -> None:
    dispatcher.sweep()


@shared_task(name="sync.purge")
def purge() -> None:
    retention.purge_closed_entries()


@shared_task(name="sync.refresh_health")
def refresh_health() -> None:
    health.refresh_health()
