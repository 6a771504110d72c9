"""Project-wide checks: migrations, the API schema and docs, the demo data command."""

import io

import pytest
import yaml
from django.contrib.auth import get_user_model
from django.core.management import call_command

from schools.management.commands import load_demo_data
from schools.models import School, Student
from schools.services import RESOURCES
from sync.models import OperationLog

pytestmark = pytest.mark.django_db


def test_every_model_change_has_a_migration():
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)


def test_openapi_schema_is_valid_and_complete(reader_client):
    response = reader_client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    for resource in ("schools", "grades", "classes", "teachers", "students"):
        assert {"get", "post"} <= set(paths[f"/api/{resource}/"])
        assert {"get", "put", "patch", "delete"} <= set(paths[f"/api/{resource}/{{id}}/"])
    assert "/api/sync/operations/" in paths
    assert "/api/auth/token/" in paths


def test_schema_generation_has_no_warnings():
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", "/dev/null")


def test_schema_and_docs_need_a_signed_in_user(client, anon_client):
    assert anon_client.get("/api/schema/").status_code == 401
    response = client.get("/api/docs/")
    assert response.status_code == 302
    assert response["Location"] == "/admin/login/?next=/api/docs/"


def test_in_development_a_user_who_is_not_staff_can_sign_in_for_the_docs(client, reader, debug_urls):
    from tests.factories import USER_PASSWORD

    response = client.post(
        "/api-auth/login/", {"username": reader.username, "password": USER_PASSWORD, "next": "/api/docs/"}
    )
    assert response.status_code == 302
    assert client.get(response["Location"]).status_code == 200


def test_swagger_ui_is_served_without_a_cdn(client, reader):
    client.force_login(reader)
    response = client.get("/api/docs/")
    assert response.status_code == 200
    assert b"/static/drf_spectacular_sidecar/swagger-ui-dist/" in response.content


def test_demo_data_loads_through_the_services_once(tmp_path, monkeypatch):
    monkeypatch.setattr(load_demo_data, "CREDENTIALS_FILE", tmp_path / "password.txt")
    output = io.StringIO()

    call_command("load_demo_data", stdout=output)

    records = sum(model.objects.count() for model in RESOURCES)
    assert School.objects.count() == len(load_demo_data.DEMO_SCHOOLS)
    assert Student.objects.exists()
    assert OperationLog.objects.filter(operation="create").count() == OperationLog.objects.count() == records

    call_command("load_demo_data", stdout=output)
    assert sum(model.objects.count() for model in RESOURCES) == OperationLog.objects.count() == records

    password = (tmp_path / "password.txt").read_text().strip()
    admin = get_user_model().objects.get(username=load_demo_data.DEMO_USERNAME)
    assert admin.is_superuser
    assert admin.check_password(password)
    assert output.getvalue().count(password) == 2  # printed on both runs


def test_the_schema_documents_every_error_an_operation_can_answer(superuser_client):
    schema = yaml.safe_load(superuser_client.get("/api/schema/").content)
    students, student = schema["paths"]["/api/students/"], schema["paths"]["/api/students/{id}/"]
    assert {"400", "401", "403", "404", "429"} <= set(students["get"]["responses"])  # 404: a page past the end
    assert {"400", "401", "403", "409", "413", "415", "429"} <= set(students["post"]["responses"])
    assert {"401", "403", "404", "429"} <= set(student["get"]["responses"])
    assert not {"400", "413", "415"} & set(student["get"]["responses"])
    assert {"400", "404", "409"} <= set(student["patch"]["responses"])
    assert {"404", "409"} <= set(student["delete"]["responses"])
    token = schema["paths"]["/api/auth/token/"]["post"]["responses"]
    assert {"400", "429"} <= set(token)
    assert "401" not in token
    assert "404" not in schema["paths"]["/api/sync/status/"]["get"]["responses"]
    field_errors = schema["components"]["schemas"]["FieldErrors"]
    assert field_errors["properties"]["detail"] == {"type": "string"}
    assert {"type": "array", "items": {"type": "string"}} in field_errors["additionalProperties"]["anyOf"]
    # Nullable where the field is.
    assert schema["components"]["schemas"]["SchoolClass"]["properties"]["homeroom_teacher"]["nullable"] is True
    for field in ("actor", "cancelled_by", "retried_by"):
        assert schema["components"]["schemas"]["OperationLog"]["properties"][field]["nullable"] is True
    assert schema["components"]["schemas"]["ScheduledChange"]["properties"]["created_by"]["nullable"] is True


def test_the_schema_documents_a_batch_of_scheduled_changes(superuser_client):
    schema = yaml.safe_load(superuser_client.get("/api/schema/").content)
    create = schema["paths"]["/api/scheduled-changes/"]["post"]
    body = create["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    one_or_many = schema["components"]["schemas"][body]["oneOf"]
    assert {"$ref": "#/components/schemas/ScheduledChangeRequest"} in one_or_many
    assert {"type": "array", "items": {"$ref": "#/components/schemas/ScheduledChangeRequest"}} in one_or_many
    errors = create["responses"]["400"]["content"]["application/json"]["schema"]["oneOf"]
    assert {"type": "array", "items": {"$ref": "#/components/schemas/FieldErrors"}} in errors
