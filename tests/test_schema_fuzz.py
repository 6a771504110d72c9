"""Schemathesis on the API's own OpenAPI schema, as a superuser and as a school member: no 5xx, nothing off-schema."""

import json
from datetime import timedelta

import pytest
import schemathesis
from django.conf import settings
from django.middleware.csrf import CSRF_SECRET_LENGTH
from django.test import Client
from django.utils import timezone
from django.utils.crypto import get_random_string
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from config.wsgi import application
from schools.models import SchoolMembership
from schools.scheduling.services import scheduled_change_create
from sync.models import EntryStatus, OperationLog
from tests.conftest import ALL_RECORD_PERMISSIONS
from tests.factories import GradeFactory, SchoolClassFactory, SchoolFactory, StudentFactory, TeacherFactory, UserFactory

pytestmark = pytest.mark.fuzz

SEED = 20261201
MAX_EXAMPLES = 20
SCHOOLS = 2
SIGN_IN_PATHS = "^/api/auth/"  # throttled, and locks out after failures: tests/test_auth.py covers them
MEMBER_PERMISSIONS = [
    *ALL_RECORD_PERMISSIONS,
    "sync.view_operationlog",
    "schools.view_scheduledchange",
    "schools.add_scheduledchange",
]

CONFIG = schemathesis.Config.from_dict(
    {
        "seed": SEED,
        "generation": {"max-examples": MAX_EXAMPLES, "with-security-parameters": False, "database": "none"},
        "phases": {"stateful": {"enabled": False}},
        "checks": {
            "enabled": False,
            "not_a_server_error": {"enabled": True},
            "status_code_conformance": {"enabled": True},
            "content_type_conformance": {"enabled": True},
            "response_schema_conformance": {"enabled": True},
        },
    }
)


def openapi_schema() -> dict:
    return json.loads(OpenApiJsonRenderer().render(SchemaGenerator().get_schema(request=None, public=True)))


schema = schemathesis.openapi.from_dict(openapi_schema(), config=CONFIG).exclude(path_regex=SIGN_IN_PATHS)


def seed_records() -> list:
    """Schools with grades, teachers, classes and students; a scheduled change each; a failed and a sent entry."""
    district = UserFactory(is_staff=True, is_superuser=True)
    schools = []
    for _ in range(SCHOOLS):
        school = SchoolFactory()
        for level in (1, 2):
            school_class = SchoolClassFactory(
                grade=GradeFactory(school=school, level=level), homeroom_teacher=TeacherFactory(school=school)
            )
            students = [StudentFactory(school_class=school_class) for _ in range(2)]
        scheduled_change_create(
            execute_at=timezone.now() + timedelta(days=1),
            resource="students",
            operation="update",
            target_id=students[0].pk,
            data={"first_name": "Ada"},
            actor=district,
        )
        schools.append(school)
    failed, sent = OperationLog.objects.order_by("sequence")[:2]
    OperationLog.objects.filter(pk=failed.pk).update(status=EntryStatus.FAILED, last_error="503 Service Unavailable")
    OperationLog.objects.filter(pk=sent.pk).update(status=EntryStatus.SUCCEEDED, pushed_at=timezone.now())
    return schools


def signed_in(user) -> dict:
    """The session cookie of a signed-in user, and the CSRF cookie and header that unsafe methods need."""
    client = Client()
    client.force_login(user)
    csrf_token = get_random_string(CSRF_SECRET_LENGTH)
    return {
        "headers": {"X-CSRFToken": csrf_token},
        "cookies": {
            settings.SESSION_COOKIE_NAME: client.cookies[settings.SESSION_COOKIE_NAME].value,
            settings.CSRF_COOKIE_NAME: csrf_token,
        },
    }


@pytest.fixture(params=["superuser", "member"])
def credentials(request):
    schools = seed_records()
    if request.param == "superuser":
        user = UserFactory(is_staff=True, is_superuser=True)
    else:
        user = UserFactory(permissions=MEMBER_PERMISSIONS)
        SchoolMembership.objects.create(user=user, school=schools[0])
    return signed_in(user)


# Requests go through the WSGI handler, which closes the connection a test transaction would be on.
@pytest.mark.django_db(transaction=True, reset_sequences=True)
@schema.parametrize()
@hypothesis_settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_every_operation_answers_within_the_schema(case, credentials):
    case.call_and_validate(app=application, **credentials)
