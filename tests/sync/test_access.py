"""The operation log as tenants see it: every entry records its schools, and readers see only theirs."""

import importlib

import pytest
from django.apps import apps

from schools.models import SchoolMembership
from schools.services import record_delete, record_update
from sync.models import EntryStatus, OperationLog
from tests.conftest import DISTRICT
from tests.factories import SchoolClassFactory, SchoolFactory, StudentFactory, UserFactory
from tests.helpers import api_client_for, lane_of

pytestmark = pytest.mark.django_db

LOG_READER = ["sync.view_operationlog"]


def member_of(*schools, permissions=LOG_READER, **fields):
    user = UserFactory(permissions=permissions, **fields)
    for school in schools:
        SchoolMembership.objects.create(user=user, school=school)
    return user


@pytest.fixture(params=["global", "school"])
def lanes(request, settings):
    settings.SYNC_LANES = request.param
    return request.param


@pytest.fixture
def two_schools_and_a_move(lanes):
    """Alder's class and student, Birch's class; the student moves to Birch, and Alder's class is deleted."""
    alder, birch = SchoolFactory(name="Alder"), SchoolFactory(name="Birch")
    alder_class = SchoolClassFactory(grade__school=alder)
    birch_class = SchoolClassFactory(grade__school=birch)
    student = StudentFactory(school_class=alder_class)
    moved = record_update(instance=student, data={"school_class": birch_class})
    record_delete(instance=SchoolClassFactory(grade=alder_class.grade, name="Gone"))
    return alder, birch, moved


def test_every_entry_records_its_schools_in_either_lane_mode(two_schools_and_a_move):
    alder, birch, _student = two_schools_and_a_move
    entries = {(entry.operation, entry.resource): entry for entry in OperationLog.objects.all()}
    assert entries[("create", "schools")].school_id in {alder.pk, birch.pk}
    assert entries[("create", "students")].school_id == alder.pk
    move = entries[("update", "students")]
    assert (move.school_id, move.other_school_id) == (birch.pk, alder.pk)
    assert entries[("delete", "classes")].school_id == alder.pk
    assert not OperationLog.objects.filter(school_id__isnull=True).exists()
    closed = SchoolFactory(name="Closed")
    closed_id = closed.pk
    record_delete(instance=closed)
    assert OperationLog.objects.get(operation="delete", resource="schools").school_id == closed_id


def test_a_member_reads_only_the_entries_of_their_schools(two_schools_and_a_move):
    alder, birch, _student = two_schools_and_a_move
    of_birch = api_client_for(member_of(birch))

    listed = of_birch.get("/api/sync/operations/").json()["results"]
    birch_entries = OperationLog.objects.filter(school_id=birch.pk) | OperationLog.objects.filter(
        other_school_id=birch.pk
    )
    assert {item["id"] for item in listed} == set(birch_entries.values_list("pk", flat=True))
    assert ("update", "students") in {(item["operation"], item["resource"]) for item in listed}  # the move in
    alder_only = OperationLog.objects.filter(school_id=alder.pk, other_school_id__isnull=True).first()
    assert of_birch.get(f"/api/sync/operations/{alder_only.pk}/").status_code == 404

    district = api_client_for(UserFactory(permissions=[*LOG_READER, DISTRICT]))
    assert district.get("/api/sync/operations/").json()["count"] == OperationLog.objects.count()


def test_reading_the_log_needs_its_view_permission(two_schools_and_a_move):
    alder, _, _ = two_schools_and_a_move
    client = api_client_for(member_of(alder, permissions=[]))
    assert client.get("/api/sync/operations/").status_code == 403
    assert client.get("/api/sync/status/").status_code == 403
    assert client.get("/api/sync/lanes/").status_code == 403
    assert api_client_for(None).get("/api/sync/status/").status_code == 401


def test_status_and_lanes_count_only_the_members_schools(two_schools_and_a_move, lanes):
    alder, birch, _ = two_schools_and_a_move
    of_alder = api_client_for(member_of(alder))
    status = of_alder.get("/api/sync/status/").json()
    alder_entries = OperationLog.objects.filter(school_id=alder.pk) | OperationLog.objects.filter(
        other_school_id=alder.pk
    )
    assert status["counts"]["pending"] == alder_entries.filter(status=EntryStatus.PENDING).count()
    assert status["counts"]["pending"] < OperationLog.objects.count()
    expected_lanes = {lane_of(alder)} if lanes == "school" else set()
    assert {lane["name"] for lane in status["lanes"]} == expected_lanes
    assert {lane["name"] for lane in of_alder.get("/api/sync/lanes/").json()["results"]} == expected_lanes
    assert of_alder.get(f"/api/sync/lanes/{lane_of(birch)}/").status_code == 404


def test_operators_act_only_on_their_schools_entries_and_lanes(two_schools_and_a_move, settings):
    alder, birch, _ = two_schools_and_a_move
    operator = api_client_for(
        member_of(alder, permissions=[*LOG_READER, "sync.retry_operationlog", "sync.cancel_operationlog"])
    )
    birch_only = OperationLog.objects.filter(school_id=birch.pk, other_school_id__isnull=True).first()
    assert operator.post(f"/api/sync/operations/{birch_only.pk}/cancel/").status_code == 404
    assert OperationLog.objects.get(pk=birch_only.pk).status == EntryStatus.PENDING

    settings.SYNC_LANES = "school"
    pauser = api_client_for(member_of(alder, permissions=[*LOG_READER, "sync.pause_synclane"]))
    assert pauser.post(f"/api/sync/lanes/{lane_of(birch)}/pause/").status_code == 404


def test_the_admin_log_and_dashboard_show_only_the_members_schools(two_schools_and_a_move, client):
    alder, birch, _ = two_schools_and_a_move
    client.force_login(member_of(alder, is_staff=True))
    alder_only = OperationLog.objects.filter(school_id=alder.pk, other_school_id__isnull=True).first()
    birch_only = OperationLog.objects.filter(school_id=birch.pk, other_school_id__isnull=True).first()

    changelist = client.get("/admin/sync/operationlog/")
    shown = {entry.pk for entry in changelist.context["cl"].result_list}
    assert alder_only.pk in shown
    assert birch_only.pk not in shown
    assert client.get(f"/admin/sync/operationlog/{birch_only.pk}/change/").status_code == 302  # "does not exist"
    dashboard = client.get("/admin/sync/operationlog/dashboard/")
    pending = sum(1 for entry in OperationLog.objects.all() if entry.pk in shown and entry.status == "pending")
    assert dashboard.context["status"]["counts"]["pending"] == pending


def test_the_migration_gives_earlier_entries_their_schools(two_schools_and_a_move):
    expected = dict(OperationLog.objects.values_list("pk", "school_id"))
    OperationLog.objects.update(school_id=None)

    migration = importlib.import_module("sync.migrations.0013_tenancy")
    migration.record_schools(apps, schema_editor=None)

    # Found from the lane, or from the payload's parent (a deleted class through its grade).
    assert dict(OperationLog.objects.values_list("pk", "school_id")) == expected


def test_operator_answers_show_entries_only_to_who_may_read_the_log(two_schools_and_a_move, settings):
    alder, _, _ = two_schools_and_a_move
    entry = OperationLog.objects.filter(school_id=alder.pk).first()
    for permission in ["sync.retry_operationlog", "sync.cancel_operationlog"]:
        client = api_client_for(member_of(alder, permissions=[permission]))
        action = permission.split(".")[1].split("_")[0]
        assert client.post(f"/api/sync/operations/{entry.pk}/{action}/").status_code == 403
    settings.SYNC_LANES = "school"
    pauser = api_client_for(member_of(alder, permissions=["sync.pause_synclane"]))
    assert pauser.post(f"/api/sync/lanes/{lane_of(alder)}/pause/").status_code == 403


@pytest.mark.parametrize("lanes", ["school"], indirect=True)
def test_filtering_the_log_by_another_schools_lane_answers_like_an_unknown_lane(two_schools_and_a_move):
    alder, birch, _ = two_schools_and_a_move
    client = api_client_for(member_of(alder))
    other, unknown = (client.get("/api/sync/operations/", {"lane": lane}) for lane in (lane_of(birch), "school-0"))
    assert other.status_code == unknown.status_code == 400
    assert other.json() == unknown.json()
    assert client.get("/api/sync/operations/", {"lane": lane_of(alder)}).status_code == 200


@pytest.mark.parametrize("lanes", ["school"], indirect=True)
def test_the_admin_log_filters_name_only_the_lanes_of_the_members_entries(two_schools_and_a_move, client):
    alder, _, _ = two_schools_and_a_move
    cedar = SchoolFactory(name="Cedar")
    client.force_login(member_of(alder, is_staff=True))
    page = client.get("/admin/sync/operationlog/").content.decode()
    assert f"lane__name__exact={lane_of(alder)}" in page
    assert f"lane__name__exact={lane_of(cedar)}" not in page


def test_metrics_need_the_whole_log(client):
    client.force_login(UserFactory(is_staff=True, permissions=LOG_READER))
    assert client.get("/metrics").status_code == 401
    client.force_login(UserFactory(is_staff=True, permissions=[*LOG_READER, DISTRICT]))
    assert client.get("/metrics").status_code == 200


def test_a_lane_name_with_a_nul_character_is_a_404(client):
    district = UserFactory(is_staff=True, permissions=[*LOG_READER, "sync.pause_synclane", DISTRICT])
    assert api_client_for(district).get("/api/sync/lanes/%00/").status_code == 404
    client.force_login(district)
    assert client.post("/admin/sync/operationlog/dashboard/lanes/%00/pause/").status_code == 404
