import importlib

import pytest
from django.core.cache import cache
from django.urls import clear_url_caches
from rest_framework.test import APIClient

import config.urls
from tests.factories import UserFactory
from tests.helpers import api_client_for

RECORD_MODELS = ["school", "grade", "schoolclass", "teacher", "student"]
ALL_RECORD_PERMISSIONS = [
    f"schools.{action}_{model}" for model in RECORD_MODELS for action in ("view", "add", "change", "delete")
]
VIEW_RECORD_PERMISSIONS = [f"schools.view_{model}" for model in RECORD_MODELS]
DISTRICT = "schools.access_all_schools"


@pytest.fixture(autouse=True)
def _test_settings(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # Tests do not run collectstatic, so there is no manifest to look names up in.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture(autouse=True)
def _clear_cache():
    # Throttle counters live in the cache; every test starts with fresh ones.
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def reader(db):
    """District staff who may read every school's records and scheduled changes, and change none."""
    return UserFactory(permissions=[*VIEW_RECORD_PERMISSIONS, "schools.view_scheduledchange", DISTRICT])


@pytest.fixture
def editor(db):
    """District staff allowed to read, add, change and delete every kind of record of every school."""
    return UserFactory(permissions=[*ALL_RECORD_PERMISSIONS, DISTRICT])


@pytest.fixture
def superuser(db):
    return UserFactory(is_staff=True, is_superuser=True)


@pytest.fixture
def superuser_client(superuser):
    return api_client_for(superuser)


@pytest.fixture
def anon_client():
    return APIClient()


@pytest.fixture
def reader_client(reader):
    return api_client_for(reader)


@pytest.fixture
def editor_client(editor):
    return api_client_for(editor)


@pytest.fixture
def operator_client(db):
    """District staff allowed to read, retry and cancel operation log entries."""
    return api_client_for(
        UserFactory(
            permissions=["sync.view_operationlog", "sync.retry_operationlog", "sync.cancel_operationlog", DISTRICT]
        )
    )


@pytest.fixture
def debug_urls(settings):
    """The URLs as DEBUG builds them (the browsable API's sign-in page), for one test."""
    debug = settings.DEBUG
    settings.DEBUG = True
    _reload_urls()
    yield
    settings.DEBUG = debug
    _reload_urls()


def _reload_urls():
    importlib.reload(config.urls)
    clear_url_caches()
