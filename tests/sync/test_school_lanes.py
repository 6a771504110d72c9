"""School lanes: one lane per school, a move holds a slot in both schools' lanes (I2, I3 per lane)."""

import pytest
from django.utils import timezone

from schools.models import SchoolClass
from schools.services import record_delete, record_update
from sync import selectors, services
from sync.models import EntryStatus, OperationLog, OperationSlot, SyncLane
from tests.factories import GradeFactory, SchoolClassFactory, SchoolFactory, StudentFactory, TeacherFactory
from tests.helpers import deliver_round_robin, lane_of

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _school_lanes(settings):
    settings.SYNC_LANES = "school"


def test_each_school_has_its_own_lane_and_sequence():
    first, second = SchoolClassFactory(), SchoolClassFactory()
    StudentFactory(school_class=first)
    StudentFactory(school_class=second)

    for school_class in (first, second):
        lane = lane_of(school_class.grade.school)
        entries = OperationLog.objects.filter(lane_id=lane).order_by("sequence")
        # school, grade, class, student: each in its school's lane, numbered from 1
        assert [(e.resource, e.sequence) for e in entries] == [
            ("schools", 1),
            ("grades", 2),
            ("classes", 3),
            ("students", 4),
        ]
    assert not OperationSlot.objects.exists()


def move(student, school_class):
    return record_update(instance=student, data={"school_class": school_class})


def test_a_move_holds_a_slot_in_both_lanes_and_is_its_new_schools_entry():
    old_class, new_class = SchoolClassFactory(), SchoolClassFactory()
    student = StudentFactory(school_class=old_class)
    old_lane, new_lane = lane_of(old_class.grade.school), lane_of(new_class.grade.school)

    move(student, new_class)

    entry = OperationLog.objects.latest("pk")
    assert (entry.lane_id, entry.sequence) == (new_lane, 4)
    assert entry.slots() == [(new_lane, 4), (old_lane, 5)]
    assert entry.payload["school_class"] == new_class.pk
    assert SyncLane.objects.get(pk=old_lane).next_sequence == 6


def test_a_teacher_move_holds_both_lanes_too():
    teacher = TeacherFactory()
    new_school = SchoolFactory()
    record_update(instance=teacher, data={"school": new_school})
    entry = OperationLog.objects.latest("pk")
    assert [lane for lane, _ in entry.slots()] == [lane_of(new_school), lane_of(teacher.school)]


def open_entries(lane):
    return list(OperationLog.objects.filter(lane_id=lane, status=EntryStatus.PENDING).order_by("sequence"))


def test_a_two_slot_entry_waits_until_it_heads_both_lanes_and_both_lanes_wait_for_it():
    old_class, new_class = SchoolClassFactory(), SchoolClassFactory()
    student = StudentFactory(school_class=old_class)
    old_lane, new_lane = lane_of(old_class.grade.school), lane_of(new_class.grade.school)
    before_move = open_entries(old_lane)  # the old school's four creates
    move(student, new_class)
    moved = OperationLog.objects.latest("pk")
    after_old = StudentFactory(school_class=old_class)  # recorded after the move in the old lane
    after_new = StudentFactory(school_class=new_class)  # and in the new lane
    now = timezone.now()

    # The new lane sends its own creates, then stops at the move: the old lane has not reached its slot.
    new_due = selectors.due_entries(new_lane, now, 100)
    assert moved.pk not in new_due
    assert len(new_due) == 3
    # The old lane sends what came before the move's slot and stops there.
    assert selectors.due_entries(old_lane, now, 100) == [entry.pk for entry in before_move]

    OperationLog.objects.filter(lane_id__in=[old_lane, new_lane], sequence__lt=4).update(status=EntryStatus.SUCCEEDED)
    assert selectors.due_entries(new_lane, now, 100) == []  # the old lane's student create (4) is still open
    assert selectors.lanes_waited_for(new_lane) == []
    OperationLog.objects.filter(pk=before_move[-1].pk).update(status=EntryStatus.SUCCEEDED)

    # Now the move heads both lanes: its own lane sends it, the old lane still waits for it.
    assert selectors.due_entries(new_lane, now, 100)[0] == moved.pk
    assert selectors.due_entries(old_lane, now, 100) == []
    assert selectors.lanes_waited_for(old_lane) == [new_lane]  # the old lane wakes the new one

    OperationLog.objects.filter(pk=moved.pk).update(status=EntryStatus.SUCCEEDED)
    assert selectors.due_entries(old_lane, now, 100) == [after_old_entry(after_old).pk]
    assert after_old_entry(after_new).pk in selectors.due_entries(new_lane, now, 100)


def after_old_entry(student):
    return OperationLog.objects.get(resource="students", object_id=student.pk, operation="create")


def test_cancelling_a_two_slot_entry_frees_both_lanes():
    old_class, new_class = SchoolClassFactory(), SchoolClassFactory()
    student = StudentFactory(school_class=old_class)
    move(student, new_class)
    moved = OperationLog.objects.latest("pk")
    later = StudentFactory(school_class=old_class)
    old_lane = lane_of(old_class.grade.school)
    OperationLog.objects.exclude(pk__in=[moved.pk, after_old_entry(later).pk]).update(status=EntryStatus.SUCCEEDED)
    assert selectors.due_entries(old_lane, timezone.now(), 100) == []

    services.entry_cancel(entry=moved)

    assert selectors.due_entries(old_lane, timezone.now(), 100) == [after_old_entry(later).pk]


def test_delivery_across_lanes_keeps_every_lanes_order_and_sends_moves_once(simulator):
    classes = [SchoolClassFactory() for _ in range(3)]
    students = [StudentFactory(school_class=school_class) for school_class in classes for _ in range(2)]
    move(students[0], classes[1])
    move(students[2], classes[2])
    move(students[4], classes[0])
    StudentFactory(school_class=classes[0])

    deliver_round_robin()

    assert not OperationLog.objects.exclude(status=EntryStatus.SUCCEEDED).exists()
    stats = simulator.stats()
    assert (stats["out_of_order"], stats["applied"], stats["lanes"]) == (0, OperationLog.objects.count(), 3)
    moves = [item for item in simulator.applied if len(item["slots"]) == 2]
    assert len(moves) == 3
    for item in simulator.applied:
        entry = OperationLog.objects.get(idempotency_key=item["key"])
        assert item["slots"] == [f"{lane}={sequence}" for lane, sequence in entry.slots()]


def test_a_paused_lane_sends_nothing_and_holds_the_moves_with_a_slot_in_it(simulator):
    old_class, new_class = SchoolClassFactory(), SchoolClassFactory()
    student = StudentFactory(school_class=old_class)
    old_lane = SyncLane.objects.get(pk=lane_of(old_class.grade.school))
    services.lane_pause(lane=old_lane)
    move(student, new_class)
    moved = OperationLog.objects.latest("pk")

    deliver_round_robin()

    assert OperationLog.objects.filter(lane=old_lane, status=EntryStatus.PENDING).count() == 4
    moved.refresh_from_db()
    assert moved.status == EntryStatus.PENDING  # its own lane runs, but the move has a slot in the paused one
    assert (
        OperationLog.objects.filter(lane_id=lane_of(new_class.grade.school), status=EntryStatus.SUCCEEDED).count() == 3
    )

    services.lane_resume(lane=old_lane)
    deliver_round_robin()
    assert not OperationLog.objects.exclude(status=EntryStatus.SUCCEEDED).exists()
    assert simulator.stats()["out_of_order"] == 0


def test_a_value_given_up_in_one_lane_and_taken_in_another_follows_the_release():
    school = SchoolFactory(name="North")
    teacher = TeacherFactory(school=school, email="ada@example.org")
    other = SchoolFactory()
    record_update(instance=school, data={"name": "North (old)"})  # gives "North" up, not yet delivered
    record_delete(instance=teacher)  # gives the e-mail up

    taken_name = SchoolFactory(name="North")
    taken_email = TeacherFactory(school=other, email="ADA@example.org")  # e-mails compare without case

    for record in (taken_name, taken_email):
        entry = OperationLog.objects.get(object_id=record.pk, operation="create", resource=entry_resource(record))
        assert [lane for lane, _ in entry.slots()] == [
            lane_of(record if record is taken_name else other),
            lane_of(school),
        ]


def entry_resource(record):
    return "schools" if record._meta.model_name == "school" else "teachers"


def test_a_value_given_up_by_a_delivered_change_needs_no_slot():
    school = SchoolFactory(name="South")
    record_update(instance=school, data={"name": "South (old)"})
    OperationLog.objects.update(status=EntryStatus.SUCCEEDED)
    SchoolFactory(name="South")
    assert not OperationSlot.objects.exists()


def test_after_switching_to_school_lanes_nothing_goes_before_the_global_backlog(settings):
    settings.SYNC_LANES = "global"
    school_class = SchoolClassFactory()  # three entries in the global lane, not yet delivered
    settings.SYNC_LANES = "school"
    first = StudentFactory(school_class=school_class)
    second = StudentFactory(school_class=school_class)
    lane = lane_of(school_class.grade.school)
    first_entry, second_entry = (after_old_entry(student) for student in (first, second))

    # While the global lane has a backlog, each new entry holds a slot after it.
    assert first_entry.slots() == [(lane, 1), ("global", 4)]
    assert second_entry.slots() == [(lane, 2), ("global", 5)]
    assert selectors.due_entries(lane, timezone.now(), 100) == []
    OperationLog.objects.filter(lane_id="global").update(status=EntryStatus.SUCCEEDED)
    assert selectors.due_entries(lane, timezone.now(), 100) == [first_entry.pk]

    # And back: a global entry waits for every school lane's backlog.
    settings.SYNC_LANES = "global"
    back = StudentFactory(school_class=school_class)
    assert after_old_entry(back).slots() == [("global", 6), (lane, 3)]


def test_metrics_show_the_lanes_furthest_behind_and_sum_up_the_rest():
    from sync.metrics import METRICS_MAX_LANES, OTHER_LANES, lane_metrics

    lanes = [
        {
            "name": f"school-{index}",
            "pending": index,
            "oldest_pending_age_seconds": float(index),
            "last_pushed_sequence": None,
            "paused": index == 3,
            "blocked_by": None,
            "lease_active": False,
        }
        for index in range(METRICS_MAX_LANES + 10)
    ]
    lag, backlog, _, states = lane_metrics(lanes)

    lag_by_lane = {sample.labels["lane"]: sample.value for sample in lag.samples}
    assert len(lag_by_lane) == METRICS_MAX_LANES + 1  # bounded, whatever the number of schools
    assert lag_by_lane[OTHER_LANES] == 9.0  # the oldest of the ten lanes not shown
    assert {sample.labels["lane"]: sample.value for sample in backlog.samples}[OTHER_LANES] == sum(range(10))
    assert {sample.labels["state"]: sample.value for sample in states.samples}["paused"] == 1


def test_the_dashboard_pauses_and_resumes_a_lane(client):
    from tests.factories import UserFactory

    school = SchoolFactory()
    operator = UserFactory(
        is_staff=True, permissions=["sync.view_operationlog", "sync.pause_synclane", "schools.access_all_schools"]
    )
    client.force_login(operator)
    lane = lane_of(school)

    page = client.get("/admin/sync/operationlog/dashboard/")
    assert page.status_code == 200
    assert f"/admin/sync/operationlog/dashboard/lanes/{lane}/pause/" in page.content.decode()
    client.post(f"/admin/sync/operationlog/dashboard/lanes/{lane}/pause/")
    assert SyncLane.objects.get(pk=lane).paused
    client.post(f"/admin/sync/operationlog/dashboard/lanes/{lane}/resume/")
    assert not SyncLane.objects.get(pk=lane).paused


def test_the_dashboard_refuses_pausing_without_the_permission(client):
    from tests.factories import UserFactory

    school = SchoolFactory()
    client.force_login(UserFactory(is_staff=True, permissions=["sync.view_operationlog"]))
    assert client.post(f"/admin/sync/operationlog/dashboard/lanes/{lane_of(school)}/pause/").status_code == 403
    assert not SyncLane.objects.get(pk=lane_of(school)).paused


def test_a_grade_or_class_moved_to_another_school_holds_both_lanes():
    school_class = SchoolClassFactory()
    StudentFactory(school_class=school_class)
    old_lane = lane_of(school_class.grade.school)
    new_school = SchoolFactory()

    record_update(instance=school_class.grade, data={"school": new_school})
    grade_move = OperationLog.objects.latest("pk")
    school_class.refresh_from_db()
    StudentFactory(school_class=school_class)  # the class's students are the new school's now

    assert [lane for lane, _ in grade_move.slots()] == [lane_of(new_school), old_lane]
    assert OperationLog.objects.latest("pk").lane_id == lane_of(new_school)


def test_a_run_does_not_send_a_move_whose_other_lane_was_paused_after_the_claim(
    simulator, published_dispatches, monkeypatch
):
    from sync import runs
    from tests.helpers import take_lease

    old_class, new_class = SchoolClassFactory(), SchoolClassFactory()
    student = StudentFactory(school_class=old_class)
    old_lane, new_lane = lane_of(old_class.grade.school), lane_of(new_class.grade.school)
    OperationLog.objects.filter(lane_id=old_lane).update(status=EntryStatus.SUCCEEDED)
    move(student, new_class)
    moved = OperationLog.objects.latest("pk")
    run = selectors.due_entries(new_lane, timezone.now(), 100)
    assert run[-1] == moved.pk  # the new school's creates, then the move

    real_send = runs.send

    def send_then_pause(entry):  # an operator pauses the old lane while the run's first call is out
        SyncLane.objects.filter(pk=old_lane).update(paused=True)
        return real_send(entry)

    monkeypatch.setattr(runs, "send", send_then_pause)
    assert runs.push_run(run, take_lease(lane=new_lane)) == runs.RunResult.HANDED_OVER
    moved.refresh_from_db()
    assert moved.status == EntryStatus.PENDING
    assert str(moved.idempotency_key) not in {item["key"] for item in simulator.applied}


def test_a_second_delivery_of_a_link_on_a_paused_lane_leaves_the_first_its_lease(simulator):
    from sync import runs
    from tests.helpers import take_lease

    school = SchoolFactory()
    lane = lane_of(school)
    ids = list(OperationLog.objects.filter(lane_id=lane).values_list("pk", flat=True))
    token = take_lease(lane=lane)
    assert runs.claim_run(ids, token)[0] is None  # the first delivery is sending
    SyncLane.objects.filter(pk=lane).update(paused=True)

    assert runs.push_run(ids, token) == runs.RunResult.ALREADY_RUNNING
    assert SyncLane.objects.get(pk=lane).lease_token == token


def test_a_student_written_with_a_stale_class_goes_where_the_class_is_now():
    school_class = SchoolClassFactory()
    stale = SchoolClass.objects.select_related("grade").get(pk=school_class.pk)  # read before the move
    new_grade = GradeFactory()
    record_update(instance=school_class, data={"grade": new_grade})

    student = StudentFactory(school_class=stale)

    assert student.school_id == new_grade.school_id
    assert OperationLog.objects.latest("pk").lane_id == lane_of(new_grade.school)
