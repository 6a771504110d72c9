"""The roles: groups with the declared permissions, which act only where their holder is a member."""

import pytest
from django.contrib.auth.models import Group

from schools.models import SchoolMembership
from schools.roles import ROLES, sync_roles
from tests.factories import SchoolClassFactory, SchoolFactory, UserFactory
from tests.helpers import api_client_for

pytestmark = pytest.mark.django_db


def permissions_of(group: Group) -> set[str]:
    return {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.select_related("content_type")}


def test_every_role_has_exactly_its_permissions_after_migrate():
    for name, codenames in ROLES.items():
        assert permissions_of(Group.objects.get(name=name)) == set(codenames), name


def test_a_role_changed_by_hand_is_brought_back_in_line():
    registrar = Group.objects.get(name="School registrar")
    registrar.permissions.clear()
    sync_roles()
    assert permissions_of(registrar) == set(ROLES["School registrar"])


def test_a_registrar_enrols_students_in_their_school_only():
    school_class, elsewhere = SchoolClassFactory(), SchoolClassFactory()
    registrar = UserFactory()
    registrar.groups.add(Group.objects.get(name="School registrar"))
    SchoolMembership.objects.create(user=registrar, school=school_class.grade.school)
    client = api_client_for(registrar)

    body = {"first_name": "Mia", "last_name": "Lee", "student_number": "7"}
    assert client.post("/api/students/", {**body, "school_class": school_class.pk}).status_code == 201
    assert client.post("/api/students/", {**body, "school_class": elsewhere.pk}).status_code == 400
    assert client.post("/api/schools/", {"name": "Mine now"}).status_code == 403

    viewer = UserFactory()
    viewer.groups.add(Group.objects.get(name="School viewer"))
    SchoolMembership.objects.create(user=viewer, school=school_class.grade.school)
    assert api_client_for(viewer).get("/api/students/").json()["count"] == 1
    assert api_client_for(viewer).post("/api/students/", {**body, "school_class": school_class.pk}).status_code == 403


def test_district_staff_act_on_every_school():
    district = UserFactory()
    district.groups.add(Group.objects.get(name="District staff"))
    SchoolFactory(), SchoolFactory()
    client = api_client_for(district)
    assert client.get("/api/schools/").json()["count"] == 2
    assert client.post("/api/schools/", {"name": "Cedar"}).status_code == 201
