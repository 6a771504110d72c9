"""Signing in: hashed API tokens that expire and die with a password change, lockout after failed
sign-ins per account and per address, the browsable API's sign-in only with DEBUG, admin sessions
that end after a working day."""

import hashlib
import importlib
from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.apps import apps
from django.conf import settings
from django.contrib.sessions.models import Session
from django.core.management import call_command
from django.db import connection
from django.db.migrations.recorder import MigrationRecorder
from django.db.models import F
from django.utils import timezone
from knox.models import AuthToken
from rest_framework.test import APIClient

from tests.factories import USER_PASSWORD, UserFactory

pytestmark = pytest.mark.django_db

TOKEN_URL = "/api/auth/token/"
LOGOUT_URL = "/api/auth/token/logout/"
ADMIN_LOGIN_URL = "/admin/login/"
LOCKED_PAGE = b"Too many failed sign-ins"

# The API root needs a signed-in user and no permission.
SIGNED_IN_ONLY_URL = "/api/"


def sign_in(client, username, password=USER_PASSWORD, address="192.0.2.1", **extra):
    return client.post(TOKEN_URL, {"username": username, "password": password}, REMOTE_ADDR=address, **extra)


def admin_sign_in(client, username, password=USER_PASSWORD, address="192.0.2.1"):
    return client.post(
        ADMIN_LOGIN_URL, {"username": username, "password": password, "next": "/admin/"}, REMOTE_ADDR=address
    )


def token_for(user) -> str:
    response = sign_in(APIClient(), user.username)
    assert response.status_code == 200, response.content
    return response.json()["token"]


def with_token(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


# --- API tokens ---------------------------------------------------------------------------


@pytest.mark.parametrize("body_format", ["json", "multipart"])
def test_the_token_endpoint_answers_a_token_that_expires_after_the_token_lifetime(body_format):
    user = UserFactory()
    response = APIClient().post(TOKEN_URL, {"username": user.username, "password": USER_PASSWORD}, format=body_format)

    assert response.status_code == 200
    assert isinstance(response.json()["token"], str)
    assert not response.cookies  # no session for a token sign-in
    expiry = AuthToken.objects.get(user=user).expiry
    expected = timezone.now() + timedelta(hours=settings.API_TOKEN_TTL_HOURS)
    assert abs(expiry - expected) < timedelta(minutes=1)


def test_wrong_credentials_are_a_400():
    user = UserFactory()
    response = sign_in(APIClient(), user.username, password="wrong")
    assert response.status_code == 400
    assert response.json() == {"non_field_errors": ["Unable to log in with provided credentials."]}


def test_a_token_is_sent_as_authorization_token():
    token = token_for(UserFactory())

    assert with_token(token).get(SIGNED_IN_ONLY_URL).status_code == 200
    assert APIClient().get(SIGNED_IN_ONLY_URL).status_code == 401
    assert with_token(token + "0").get(SIGNED_IN_ONLY_URL).status_code == 401


def test_tokens_are_stored_hashed():
    user = UserFactory()
    token = token_for(user)

    row = AuthToken.objects.values().get(user=user)
    assert not any(token in str(value) for value in row.values())
    assert row["digest"] == hashlib.sha512(token.encode()).hexdigest()


def test_an_expired_token_is_refused():
    user = UserFactory()
    token = token_for(user)
    AuthToken.objects.filter(user=user).update(expiry=timezone.now() - timedelta(seconds=1))

    assert with_token(token).get(SIGNED_IN_ONLY_URL).status_code == 401


def test_a_password_change_revokes_every_token_of_that_user():
    user, other = UserFactory(), UserFactory()
    tokens = [token_for(user), token_for(user)]
    others_token = token_for(other)

    user.first_name = "Renamed"
    user.save()
    assert with_token(tokens[0]).get(SIGNED_IN_ONLY_URL).status_code == 200

    user.set_password("a new password for this user")
    user.save()

    assert [with_token(token).get(SIGNED_IN_ONLY_URL).status_code for token in tokens] == [401, 401]
    assert with_token(others_token).get(SIGNED_IN_ONLY_URL).status_code == 200
    assert sign_in(APIClient(), user.username, password="a new password for this user").status_code == 200


def test_a_token_that_is_not_utf8_is_a_401():
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token \xe9")
    assert client.get(SIGNED_IN_ONLY_URL).status_code == 401


def test_signing_out_revokes_the_token_it_is_sent_with():
    user = UserFactory()
    token, kept = token_for(user), token_for(user)

    assert with_token(token).post(LOGOUT_URL).status_code == 204

    assert with_token(token).get(SIGNED_IN_ONLY_URL).status_code == 401
    assert with_token(kept).get(SIGNED_IN_ONLY_URL).status_code == 200
    assert APIClient().post(LOGOUT_URL).status_code == 401


def test_plain_text_tokens_of_the_old_token_table_keep_working_until_the_token_lifetime():
    if connection.vendor != "postgresql":
        pytest.skip("a schema change inside the test's transaction (PostgreSQL)")
    migration = importlib.import_module("accounts.migrations.0001_tokens_from_authtoken")
    user = UserFactory()
    old_key = "0123456789abcdef0123456789abcdef01234567"
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, created timestamp with time zone, "
            "user_id integer NOT NULL)"
        )
        cursor.execute("INSERT INTO authtoken_token VALUES (%s, now(), %s)", [old_key, user.pk])
    MigrationRecorder(connection).record_applied("authtoken", "0001_initial")

    with connection.schema_editor() as schema_editor:
        migration.move_tokens(apps, schema_editor)

    assert "authtoken_token" not in connection.introspection.table_names()
    assert not MigrationRecorder(connection).migration_qs.filter(app="authtoken").exists()
    moved = AuthToken.objects.get(user=user)
    assert moved.digest != old_key
    assert abs(moved.expiry - (timezone.now() + timedelta(hours=settings.API_TOKEN_TTL_HOURS))) < timedelta(minutes=1)
    assert with_token(old_key).get(SIGNED_IN_ONLY_URL).status_code == 200


# --- Lockout on the token endpoint ------------------------------------------------------------


def test_the_token_endpoint_locks_an_account_after_failures_from_any_address():
    user = UserFactory()
    limit = settings.LOGIN_FAILURE_LIMIT
    client = APIClient()

    statuses = [sign_in(client, user.username, "guess", address=f"198.51.100.{n}").status_code for n in range(limit)]
    locked = sign_in(client, user.username, address="203.0.113.9")

    assert statuses == [400] * (limit - 1) + [429]
    assert locked.status_code == 429
    assert "Too many failed sign-ins" in locked.json()["detail"]
    assert locked["Retry-After"] == str(settings.LOGIN_LOCKOUT_MINUTES * 60)
    assert not AuthToken.objects.filter(user=user).exists()
    assert sign_in(client, UserFactory().username, address="203.0.113.9").status_code == 200


def test_the_token_endpoint_locks_an_address_after_failures_for_any_account():
    limit = settings.LOGIN_FAILURE_LIMIT
    client = APIClient()
    for n in range(limit):
        sign_in(client, f"nobody{n}", "guess", address="198.51.100.7")
    user = UserFactory()

    assert sign_in(client, user.username, address="198.51.100.7").status_code == 429
    assert sign_in(client, user.username, address="198.51.100.8").status_code == 200


def test_a_forged_forwarded_for_header_does_not_escape_the_address_lockout():
    client = APIClient()
    for n in range(settings.LOGIN_FAILURE_LIMIT):
        sign_in(client, f"nobody{n}", "guess", HTTP_X_FORWARDED_FOR=f"10.0.0.{n}")

    assert sign_in(client, UserFactory().username, HTTP_X_FORWARDED_FOR="10.0.0.99").status_code == 429


def test_behind_a_proxy_the_address_is_the_one_it_forwards(settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    client = APIClient()
    for n in range(settings.LOGIN_FAILURE_LIMIT):
        sign_in(client, f"nobody{n}", "guess", address="10.1.1.1", HTTP_X_FORWARDED_FOR="198.51.100.7")

    user = UserFactory()
    assert sign_in(client, user.username, address="10.1.1.1", HTTP_X_FORWARDED_FOR="198.51.100.7").status_code == 429
    assert sign_in(client, user.username, address="10.1.1.1", HTTP_X_FORWARDED_FOR="198.51.100.8").status_code == 200


def test_a_successful_sign_in_clears_the_failures():
    user = UserFactory()
    client = APIClient()
    below_limit = settings.LOGIN_FAILURE_LIMIT - 1
    for _ in range(below_limit):
        sign_in(client, user.username, "guess")
    assert sign_in(client, user.username).status_code == 200

    statuses = [sign_in(client, user.username, "guess").status_code for _ in range(below_limit + 1)]
    assert statuses == [400] * below_limit + [429]


def test_a_lockout_ends_after_the_lockout_time():
    user = UserFactory()
    client = APIClient()
    for _ in range(settings.LOGIN_FAILURE_LIMIT):
        sign_in(client, user.username, "guess")
    assert sign_in(client, user.username).status_code == 429

    lockout = timedelta(minutes=settings.LOGIN_LOCKOUT_MINUTES)
    AccessAttempt.objects.update(attempt_time=F("attempt_time") - lockout + timedelta(seconds=30))
    assert sign_in(client, user.username).status_code == 429  # attempts while locked do not extend it
    AccessAttempt.objects.update(attempt_time=F("attempt_time") - timedelta(seconds=31))

    assert sign_in(client, user.username).status_code == 200


def test_an_administrator_lifts_a_lockout_with_a_command():
    user = UserFactory()
    client = APIClient()
    for n in range(settings.LOGIN_FAILURE_LIMIT):
        sign_in(client, user.username, "guess", address=f"198.51.100.{n}")
    assert sign_in(client, user.username).status_code == 429

    call_command("axes_reset_username", user.username, stdout=None)

    assert sign_in(client, user.username).status_code == 200


# --- Lockout on the admin --------------------------------------------------------------------


def test_the_admin_locks_an_account_after_failures_from_any_address(client):
    staff = UserFactory(is_staff=True)
    limit = settings.LOGIN_FAILURE_LIMIT

    failures = [admin_sign_in(client, staff.username, "guess", address=f"198.51.100.{n}") for n in range(limit)]
    locked = admin_sign_in(client, staff.username, address="203.0.113.9")

    assert [response.status_code for response in failures] == [200] * (limit - 1) + [429]
    assert locked.status_code == 429
    assert LOCKED_PAGE in locked.content
    assert locked["Retry-After"] == str(settings.LOGIN_LOCKOUT_MINUTES * 60)
    assert client.get("/admin/").status_code == 302  # not signed in


def test_the_admin_locks_an_address_after_failures_for_any_account(client):
    for n in range(settings.LOGIN_FAILURE_LIMIT):
        admin_sign_in(client, f"nobody{n}", "guess", address="198.51.100.7")
    staff = UserFactory(is_staff=True)

    assert admin_sign_in(client, staff.username, address="198.51.100.7").status_code == 429
    response = admin_sign_in(client, staff.username, address="198.51.100.8")
    assert response.status_code == 302
    assert client.get("/admin/").status_code == 200


# --- The browsable API, the docs, the admin session -------------------------------------------


def test_the_browsable_api_sign_in_is_off_without_debug():
    assert APIClient().get("/api-auth/login/").status_code == 404


def test_without_debug_the_api_answers_a_browser_in_json(reader_client):
    response = reader_client.get("/api/", HTTP_ACCEPT="text/html,application/xhtml+xml,*/*;q=0.8")
    assert response["Content-Type"] == "application/json"


def test_the_browsable_api_sign_in_is_there_with_debug(debug_urls):
    assert APIClient().get("/api-auth/login/").status_code == 200


def test_staff_sign_in_for_the_docs_at_the_admin(client):
    staff = UserFactory(is_staff=True)

    response = client.get("/api/docs/")
    assert response.status_code == 302
    assert response["Location"] == "/admin/login/?next=/api/docs/"
    response = client.post(response["Location"], {"username": staff.username, "password": USER_PASSWORD})

    assert response.status_code == 302
    assert response["Location"] == "/api/docs/"
    assert client.get("/api/docs/").status_code == 200


def test_an_admin_session_ends_a_working_day_after_sign_in_or_with_the_browser(client):
    staff = UserFactory(is_staff=True)

    response = admin_sign_in(client, staff.username)
    assert response.status_code == 302
    cookie = response.cookies[settings.SESSION_COOKIE_NAME]
    assert not cookie["max-age"]
    assert not cookie["expires"]
    session = Session.objects.get(session_key=cookie.value)
    assert abs(session.expire_date - (timezone.now() + timedelta(hours=8))) < timedelta(minutes=1)

    assert client.get("/admin/").status_code == 200
    assert Session.objects.get(session_key=cookie.value).expire_date == session.expire_date
