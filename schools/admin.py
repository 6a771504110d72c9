"""Admin screens for the school records; saves and deletes go through schools.services."""

from typing import TYPE_CHECKING

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.http import HttpResponseRedirect

from config.api import CONCURRENT_CHANGE
from config.errors import ConflictError
from schools import access
from schools.imports.admin import SchoolImports
from schools.lanes import lane_of
from schools.models import Grade, ScheduledChange, School, SchoolClass, SchoolMembership, Student, Teacher
from schools.scheduling.services import NotCancellableError, scheduled_change_cancel
from schools.services import RESOURCES, record_add, record_delete, record_update
from sync.admin import ReadOnlyAdminMixin
from sync.recorder import lock_lanes

WRITE_REFUSED = "Nothing was saved: {reason}"

# ServiceWritesMixin goes before admin.ModelAdmin; this tells the type checker so.
if TYPE_CHECKING:
    _ModelAdmin = admin.ModelAdmin
else:
    _ModelAdmin = object


class ChangedAsShownMixin:
    """Forms carry each field's value as the page showed it, so ``changed_data`` is what the
    user changed, not what differs from the row when the form comes back (which would
    include another user's change made meanwhile, and write the old value over it)."""

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        formfield = super().formfield_for_dbfield(db_field, request, **kwargs)  # type: ignore[misc]
        if formfield is not None:
            formfield.show_hidden_initial = True
        return formfield


class InUsersSchoolsMixin(_ModelAdmin):
    """Rows, foreign-key choices and (through the related admins) autocomplete narrowed to the user's schools."""

    def get_queryset(self, request):
        return access.scoped(super().get_queryset(request), request.user)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        related = db_field.related_model
        if related in access.SCHOOL_ID_PATHS and "queryset" not in kwargs:
            kwargs["queryset"] = access.scoped(related._default_manager.all(), request.user)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class ServiceWritesMixin(InUsersSchoolsMixin, ChangedAsShownMixin, _ModelAdmin):
    """Route every admin write (forms, inlines, bulk delete) through the services.

    The forms check the same rules first; what only the service can find out (a clash
    between two inline rows, a concurrent change) becomes an error message, not a 500.
    The admin wraps each of these views in a transaction, so a refusal leaves nothing.
    """

    def changeform_view(self, request, *args, **kwargs):
        return self._refusals_as_messages(request, super().changeform_view, *args, **kwargs)

    def delete_view(self, request, *args, **kwargs):
        return self._refusals_as_messages(request, super().delete_view, *args, **kwargs)

    def changelist_view(self, request, *args, **kwargs):
        return self._refusals_as_messages(request, super().changelist_view, *args, **kwargs)

    def _refusals_as_messages(self, request, view, *args, **kwargs):
        try:
            return view(request, *args, **kwargs)
        except ValidationError as exc:
            reason = " ".join(exc.messages)
        except ConflictError as exc:
            reason = str(exc)
        except IntegrityError:
            reason = CONCURRENT_CHANGE
        self.message_user(request, WRITE_REFUSED.format(reason=reason), messages.ERROR)
        return HttpResponseRedirect(request.get_full_path())

    def save_model(self, request, obj, form, change):
        if change:
            # Only what this form changed, applied to the record as it is now: a concurrent
            # change to other fields stays.
            record_update(instance=obj, data=_changed_fields(obj, form.changed_data), actor=request.user)
            obj.refresh_from_db()  # the admin's pages and inlines go on with the row as saved
        else:
            record_add(instance=obj, actor=request.user)

    def delete_model(self, request, obj):
        record_delete(instance=obj, actor=request.user)

    def delete_queryset(self, request, queryset):
        with transaction.atomic():
            records = list(queryset)
            # All the lanes first, in name order: deleting one school's record after another's
            # would lock their lanes in the list's order, against a move locking them in name order.
            lock_lanes({lane_of(record) for record in records})
            for obj in records:
                record_delete(instance=obj, actor=request.user)

    def save_formset(self, request, form, formset, change):
        if formset.model not in RESOURCES:  # memberships: not school records, nothing to sync
            super().save_formset(request, form, formset, change)
            return
        # commit=False fills deleted_objects, new_objects and changed_objects without writing.
        formset.save(commit=False)
        for obj in formset.deleted_objects:
            record_delete(instance=obj, actor=request.user)
        for obj in formset.new_objects:
            record_add(instance=obj, actor=request.user)
        for obj, changed in formset.changed_objects:
            record_update(instance=obj, data=_changed_fields(obj, changed), actor=request.user)
        formset.save_m2m()


def _changed_fields(obj, names: list[str]) -> dict:
    """The values a form changed, as model fields (a form may have fields the model has not)."""
    model_fields = {field.name for field in obj._meta.concrete_fields}
    return {name: getattr(obj, name) for name in names if name in model_fields}


class GradeInline(InUsersSchoolsMixin, ChangedAsShownMixin, admin.TabularInline):
    model = Grade
    fields = ["level", "name"]
    extra = 0
    show_change_link = True


class SchoolClassInline(InUsersSchoolsMixin, ChangedAsShownMixin, admin.TabularInline):
    model = SchoolClass
    fields = ["name", "homeroom_teacher"]
    autocomplete_fields = ["homeroom_teacher"]
    extra = 0
    show_change_link = True


class SchoolMembershipInline(admin.TabularInline):
    """Who acts on the school's records; their permissions say what they may do there."""

    model = SchoolMembership
    fields = ["user", "created_at"]
    readonly_fields = ["created_at"]
    raw_id_fields = ["user"]  # a user's id, not a list of every user of the district
    extra = 0
    verbose_name = "member"
    verbose_name_plural = "members"


@admin.register(School)
class SchoolAdmin(ServiceWritesMixin, admin.ModelAdmin):
    list_display = ["name", "address", "updated_at"]
    search_fields = ["name", "address"]
    inlines = [GradeInline, SchoolMembershipInline]

    def has_add_permission(self, request):
        return super().has_add_permission(request) and access.may_access(request.user, [None])

    def get_urls(self):
        return SchoolImports(self).get_urls() + super().get_urls()


@admin.register(Grade)
class GradeAdmin(ServiceWritesMixin, admin.ModelAdmin):
    list_display = ["name", "level", "school"]
    list_filter = ["level", ("school", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["school"]
    search_fields = ["name", "school__name"]
    autocomplete_fields = ["school"]
    inlines = [SchoolClassInline]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("school")


@admin.register(SchoolClass)
class SchoolClassAdmin(ServiceWritesMixin, admin.ModelAdmin):
    list_display = ["name", "grade", "homeroom_teacher"]
    list_filter = ["grade__level", ("grade__school", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["name", "grade__name", "grade__school__name"]
    autocomplete_fields = ["grade", "homeroom_teacher"]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("grade__school", "homeroom_teacher")


@admin.register(Teacher)
class TeacherAdmin(ServiceWritesMixin, admin.ModelAdmin):
    list_display = ["last_name", "first_name", "email", "school"]
    list_filter = [("school", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["school"]
    search_fields = ["first_name", "last_name", "email"]
    autocomplete_fields = ["school"]


@admin.register(Student)
class StudentAdmin(ServiceWritesMixin, admin.ModelAdmin):
    list_display = ["student_number", "last_name", "first_name", "school_class", "school"]
    list_filter = [("school", admin.RelatedOnlyFieldListFilter), "school_class__grade__level"]
    search_fields = ["student_number", "first_name", "last_name"]
    autocomplete_fields = ["school_class"]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("school", "school_class__grade__school")


@admin.register(ScheduledChange)
class ScheduledChangeAdmin(InUsersSchoolsMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    """Scheduled changes are made through the API; here they can be watched and cancelled."""

    list_display = [
        "execute_at",
        "operation",
        "resource",
        "target_id",
        "school_id",
        "status",
        "attempt_count",
        "created_by",
        "finished_at",
    ]
    list_filter = ["status", "resource", "operation"]
    list_select_related = ["created_by"]
    date_hierarchy = "execute_at"
    search_fields = ["=id", "=target_id"]
    actions = ["cancel_changes"]
    readonly_fields = [field.name for field in ScheduledChange._meta.fields]

    @admin.action(description="Cancel selected changes (if not started)")
    def cancel_changes(self, request, queryset):
        cancelled = 0
        for change in queryset:
            if not request.user.has_perm(access.CANCEL_SCHEDULED_CHANGE, change):
                self.message_user(
                    request, f"{change}: only its creator, or who may delete it, may cancel it.", messages.WARNING
                )
                continue
            try:
                scheduled_change_cancel(change=change, actor=request.user)
            except NotCancellableError as exc:
                self.message_user(request, f"{change}: {exc}", messages.WARNING)
            else:
                cancelled += 1
        if cancelled:
            self.message_user(request, f"{cancelled} scheduled changes cancelled.", messages.SUCCESS)
