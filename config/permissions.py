"""Permission classes of the REST API: Django's model permissions, reads included."""

from rest_framework import permissions

READ_PERMISSION = ["%(app_label)s.view_%(model_name)s"]


class ModelPermissions(permissions.DjangoModelPermissions):
    """Listing or retrieving needs ``view_<model>``; creating ``add_``, changing ``change_``, deleting ``delete_``."""

    perms_map = {**permissions.DjangoModelPermissions.perms_map, "GET": READ_PERMISSION, "HEAD": READ_PERMISSION}


class RecordPermissions(permissions.DjangoObjectPermissions):
    """The same model permissions, which hold for a school record only within the user's schools (schools.access)."""

    perms_map = ModelPermissions.perms_map


class HasPermission(permissions.BasePermission):
    """The one permission a view names in ``required_permission``, for views without a model queryset."""

    def has_permission(self, request, view):
        return request.user.has_perm(view.required_permission)
