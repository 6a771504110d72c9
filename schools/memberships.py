"""Granting and withdrawing a user's membership of a school (who may act on its records)."""

import logging

from django.contrib.auth.models import User
from django.db import transaction

from schools.models import School, SchoolMembership

logger = logging.getLogger(__name__)


@transaction.atomic
def membership_add(*, school: School, user: User, actor: User) -> tuple[SchoolMembership, bool]:
    """Make the user a member of the school; returns the membership and whether it is new."""
    membership, created = SchoolMembership.objects.get_or_create(school=school, user=user)
    if created:
        logger.info("%s made %s a member of school %s", actor.username, user.username, school.pk)
    return membership, created


@transaction.atomic
def membership_remove(*, membership: SchoolMembership, actor: User) -> None:
    membership.delete()
    logger.info(
        "%s withdrew %s's membership of school %s", actor.username, membership.user.username, membership.school_id
    )
