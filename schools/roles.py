"""The roles staff are given, as Django groups whose permissions are kept as declared here.

A role says what a user may do; their memberships (or district access) say where. The
groups are brought in line after every ``migrate``, so a permission added here reaches
every holder of the role on the next deploy.
"""

from django.contrib.auth.models import Group, Permission
from django.db.models import Q

RECORDS = ["school", "grade", "schoolclass", "teacher", "student"]
SCHOOL_RECORDS = ["grade", "schoolclass", "teacher", "student"]  # a school itself is the district's to add


def _perms(actions: list[str], models: list[str], app: str = "schools") -> list[str]:
    return [f"{app}.{action}_{model}" for model in models for action in actions]


VIEWER = [*_perms(["view"], RECORDS), "schools.view_scheduledchange"]
REGISTRAR = [
    *VIEWER,
    *_perms(["add", "change", "delete"], SCHOOL_RECORDS),
    "schools.change_school",
    "schools.delete_scheduledchange",
]
SCHOOL_ADMINISTRATOR = [*REGISTRAR, *_perms(["view", "add", "change", "delete"], ["schoolmembership"])]
SYNC_OPERATOR = [
    "sync.view_operationlog",
    "sync.retry_operationlog",
    "sync.cancel_operationlog",
    "sync.view_synclane",
    "sync.pause_synclane",
]
DISTRICT_STAFF = [
    *SCHOOL_ADMINISTRATOR,
    "schools.add_school",
    "schools.delete_school",
    "schools.access_all_schools",
    "sync.view_operationlog",
]

ROLES: dict[str, list[str]] = {
    "School viewer": VIEWER,
    "School registrar": REGISTRAR,
    "School administrator": SCHOOL_ADMINISTRATOR,
    "Sync operator": SYNC_OPERATOR,
    "District staff": DISTRICT_STAFF,
}


def sync_roles(**kwargs) -> None:
    """Create each role's group and give it exactly its permissions (a post_migrate receiver)."""
    for name, codenames in ROLES.items():
        group, _ = Group.objects.get_or_create(name=name)
        wanted = Q(pk__in=[])
        for codename in codenames:
            app_label, permission = codename.split(".")
            wanted |= Q(content_type__app_label=app_label, codename=permission)
        permissions = list(Permission.objects.filter(wanted))
        if len(permissions) != len(set(codenames)):
            return  # not every app's permissions exist yet; the last app's post_migrate completes them
        group.permissions.set(permissions)
