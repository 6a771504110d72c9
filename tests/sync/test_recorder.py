"""The recorder: only inside the writing transaction, with one kick per lane and transaction (I1)."""

import re

import pytest
from django.db import transaction

from schools.services import (
    grade_create,
    record_update,
    school_create,
)
from sync.models import DEFAULT_LANE
from sync.recorder import NOT_IN_TRANSACTION, entry_create

pytestmark = pytest.mark.django_db


@pytest.mark.django_db(transaction=True)
def test_recording_outside_a_transaction_is_refused():
    with pytest.raises(RuntimeError, match=re.escape(NOT_IN_TRANSACTION)):
        entry_create(operation="create", resource="schools", object_id=1, payload={})


def test_one_kick_per_lane_per_transaction(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks, transaction.atomic():
        school = school_create(name="Kick once")
        grade_create(school=school, level=1, name="One")
        record_update(instance=school, data={"address": "Here"})
    assert len(callbacks) == 1
    assert callbacks[0].kicks_lane == DEFAULT_LANE
