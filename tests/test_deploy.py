"""Production settings pass Django's deployment checks; the compose stack validates."""

import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

BASE_DIR = Path(__file__).resolve().parents[1]

PRODUCTION_ENV = {
    "DJANGO_DEBUG": "false",
    "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
    "DJANGO_ALLOWED_HOSTS": "school-sync.example.org",
    "DJANGO_SECURE_SSL_REDIRECT": "true",
    "DATABASE_URL": "postgres://school_sync:secret@db.example.org:5432/school_sync",
    "CELERY_BROKER_URL": "amqp://school_sync:secret@mq.example.org:5672//",
    "DJANGO_CACHE_URL": "redis://cache.example.org:6379/0",
}

COMPOSE_ENV = {
    "DJANGO_SECRET_KEY": "x",
    "POSTGRES_PASSWORD": "y",
    "RABBITMQ_PASSWORD": "z",
}


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_is_clean_with_production_settings():
    result = run("check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION_ENV)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_production_refuses_to_start_without_a_secret_key():
    result = run("check", env={**PRODUCTION_ENV, "DJANGO_SECRET_KEY": ""})
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY is required" in result.stderr


@pytest.mark.parametrize(("lease", "starts"), [("2.9", False), ("3", True), ("6", True)])
def test_the_lease_leaves_room_for_its_renewals(lease, starts):
    # The lease is renewed every third of it; shorter than 3 s, a busy database could miss a renewal.
    result = run("check", env={**PRODUCTION_ENV, "SYNC_LEASE_SECONDS": lease})
    assert (result.returncode == 0) is starts, result.stderr[-500:]
    assert ("SYNC_LEASE_SECONDS must be at least 3" in result.stderr) is not starts


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose is not installed")
def test_the_compose_stack_validates():
    result = subprocess.run(
        ["docker-compose", "-f", "docker/compose.yaml", "config", "-q"],
        cwd=BASE_DIR,
        env={**os.environ, **COMPOSE_ENV},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("url", "allow", "starts"),
    [
        ("http://external.example.org", "false", False),  # children's records in clear text
        ("http://external.example.org", "true", True),  # the operator says the network is private
        ("https://external.example.org", "false", True),
        ("http://127.0.0.1:8001", "false", True),  # on this host
    ],
)
def test_production_refuses_plain_http_to_another_host(url, allow, starts):
    result = run("check", env={**PRODUCTION_ENV, "SYNC_API_URL": url, "SYNC_API_ALLOW_HTTP": allow})
    assert (result.returncode == 0) is starts, result.stderr[-500:]
    assert ("is plain HTTP to another host" in result.stderr) is not starts


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose is not installed")
def test_the_simulator_is_in_the_development_profile_only():
    result = subprocess.run(
        ["docker-compose", "-f", "docker/compose.yaml", "config"],
        cwd=BASE_DIR,
        env={**os.environ, **COMPOSE_ENV},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert services["simulator"]["profiles"] == ["dev"]
    assert not any("profiles" in service for name, service in services.items() if name != "simulator")
