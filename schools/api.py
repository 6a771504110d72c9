"""REST endpoints for the school records; every write is delegated to schools.services."""

from django.shortcuts import get_object_or_404
from django.utils.functional import cached_property
from django_filters import rest_framework as filters
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
    extend_schema_view,
)
from rest_framework import mixins, permissions, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied, Throttled, ValidationError
from rest_framework.response import Response

from config.api import signed_in_user
from config.permissions import HasPermission, RecordPermissions
from schools import access
from schools.filters import InUsersSchoolsFilterSet
from schools.memberships import membership_add, membership_remove
from schools.models import Grade, ScheduledChange, School, SchoolClass, SchoolMembership, Student, Teacher
from schools.scheduling.services import (
    InvalidChangesError,
    SchedulingLimitError,
    scheduled_change_cancel,
    scheduled_changes_cancel,
    scheduled_changes_create,
)
from schools.scheduling.validation import permission_refusal
from schools.serializers import (
    GradeSerializer,
    ScheduledChangeCancelResultSerializer,
    ScheduledChangeCancelSerializer,
    ScheduledChangeSerializer,
    SchoolClassSerializer,
    SchoolMemberSerializer,
    SchoolSerializer,
    StudentSerializer,
    TeacherSerializer,
)
from schools.services import record_create, record_delete, record_update


@extend_schema_view(
    destroy=extend_schema(
        responses={
            204: OpenApiResponse(description="Deleted."),
            409: OpenApiResponse(description="Refused: other records still reference this one."),
        }
    )
)
class RecordViewSet(viewsets.ModelViewSet):
    """CRUD for one kind of record, narrowed to the user's schools; writes go through the services."""

    permission_classes = [permissions.IsAuthenticated, RecordPermissions]

    def get_queryset(self):
        return access.scoped(super().get_queryset(), self.request.user)

    def perform_create(self, serializer):
        serializer.instance = record_create(
            model=serializer.Meta.model, data=serializer.validated_data, actor=signed_in_user(self.request)
        )

    def perform_update(self, serializer):
        serializer.instance = record_update(
            instance=serializer.instance, data=serializer.validated_data, actor=signed_in_user(self.request)
        )

    def perform_destroy(self, instance):
        record_delete(instance=instance, actor=signed_in_user(self.request))


class SchoolViewSet(RecordViewSet):
    queryset = School.objects.all()
    serializer_class = SchoolSerializer
    search_fields = ["name", "address"]
    ordering_fields = ["id", "name"]
    ordering = ["name"]

    def perform_create(self, serializer):
        if not access.may_access(self.request.user, [None]):
            raise PermissionDenied(access.NEW_SCHOOL_NEEDS_DISTRICT)
        super().perform_create(serializer)


class GradeFilter(InUsersSchoolsFilterSet):
    class Meta:
        model = Grade
        fields = ["school", "level"]


class GradeViewSet(RecordViewSet):
    queryset = Grade.objects.all()
    serializer_class = GradeSerializer
    filterset_class = GradeFilter
    search_fields = ["name"]
    ordering_fields = ["id", "level", "name"]
    ordering = ["school", "level"]


class SchoolClassFilter(InUsersSchoolsFilterSet):
    school = filters.NumberFilter(field_name="grade__school", help_text="Only classes of this school.")

    class Meta:
        model = SchoolClass
        fields = ["school", "grade", "homeroom_teacher"]


class SchoolClassViewSet(RecordViewSet):
    queryset = SchoolClass.objects.all()
    serializer_class = SchoolClassSerializer
    filterset_class = SchoolClassFilter
    search_fields = ["name"]
    ordering_fields = ["id", "name"]
    ordering = ["grade", "name"]


class TeacherFilter(InUsersSchoolsFilterSet):
    class Meta:
        model = Teacher
        fields = ["school"]


class TeacherViewSet(RecordViewSet):
    queryset = Teacher.objects.all()
    serializer_class = TeacherSerializer
    filterset_class = TeacherFilter
    search_fields = ["first_name", "last_name", "email"]
    ordering_fields = ["id", "first_name", "last_name", "email"]
    ordering = ["last_name", "first_name", "id"]


class StudentFilter(InUsersSchoolsFilterSet):
    school = filters.NumberFilter(field_name="school", help_text="Only students of this school.")
    grade = filters.NumberFilter(field_name="school_class__grade", help_text="Only students of this grade.")

    class Meta:
        model = Student
        fields = ["school", "grade", "school_class"]


class StudentViewSet(RecordViewSet):
    queryset = Student.objects.all()
    serializer_class = StudentSerializer
    filterset_class = StudentFilter
    search_fields = ["first_name", "last_name", "student_number"]
    ordering_fields = ["id", "first_name", "last_name", "student_number"]
    ordering = ["last_name", "first_name", "id"]


SCHOOL_ID = OpenApiParameter("school_pk", int, OpenApiParameter.PATH, description="The school's id.")
MEMBER_ID = OpenApiParameter("user_id", int, OpenApiParameter.PATH, description="The member's user id.")


@extend_schema_view(
    list=extend_schema(parameters=[SCHOOL_ID], description="The users who act on this school's records."),
    create=extend_schema(
        parameters=[SCHOOL_ID],
        description="Make a user a member of the school.",
        responses={
            201: SchoolMemberSerializer,
            200: OpenApiResponse(SchoolMemberSerializer, description="They were a member already."),
        },
    ),
    destroy=extend_schema(
        parameters=[SCHOOL_ID, MEMBER_ID],
        description="Withdraw a user's membership of the school.",
        responses={204: OpenApiResponse(description="Withdrawn.")},
    ),
)
class SchoolMemberViewSet(
    mixins.ListModelMixin, mixins.CreateModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet
):
    """The members of one school, for users with schools.change_schoolmembership who may act on that school."""

    serializer_class = SchoolMemberSerializer
    permission_classes = [permissions.IsAuthenticated, HasPermission]
    required_permission = "schools.change_schoolmembership"
    lookup_field = "user_id"
    lookup_value_regex = "[0-9]+"
    filter_backends: list = []

    @cached_property
    def school(self) -> School:
        return get_object_or_404(access.scoped(School.objects.all(), self.request.user), pk=self.kwargs["school_pk"])

    def get_queryset(self):
        return SchoolMembership.objects.filter(school=self.school).select_related("user").order_by("user__username")

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        membership, created = membership_add(
            school=self.school, user=serializer.validated_data["user"], actor=signed_in_user(request)
        )
        return Response(
            self.get_serializer(membership).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )

    def perform_destroy(self, instance):
        membership_remove(membership=instance, actor=signed_in_user(self.request))


MAX_BATCH_SIZE = 1000  # changes in one POST
ONE_OR_MANY_CHANGES = PolymorphicProxySerializer(
    component_name="ScheduledChangeOrBatch",
    serializers=[ScheduledChangeSerializer, ScheduledChangeSerializer(many=True)],
    resource_type_field_name=None,
    many=False,
)
"""One scheduled change, or a batch: a JSON array of them."""
FIELD_ERRORS_REF = {"$ref": "#/components/schemas/FieldErrors"}  # documented by config.schema


SCHEDULING_LIMITS_DESCRIPTION = (
    "The user has scheduled SCHEDULED_CHANGES_PER_MINUTE changes in the last minute (Retry-After says when "
    "to try again), or has SCHEDULED_CHANGES_MAX_PENDING changes waiting to run."
)


class ScheduledChangeFilter(filters.FilterSet):
    due_before = filters.IsoDateTimeFilter(field_name="execute_at", lookup_expr="lte")
    due_after = filters.IsoDateTimeFilter(field_name="execute_at", lookup_expr="gte")

    class Meta:
        model = ScheduledChange
        fields = ["status", "resource", "operation", "due_before", "due_after"]


class ScheduledChangePermissions(permissions.BasePermission):
    """Reading needs schools.view_scheduledchange; scheduling needs what making the change needs
    (checked per change); cancelling is for the creator or who may delete that school's changes."""

    def has_permission(self, request, view):
        if view.action in ("list", "retrieve"):
            return request.user.has_perm("schools.view_scheduledchange")
        return True

    def has_object_permission(self, request, view, obj):
        if view.action == "destroy":
            return request.user.has_perm(access.CANCEL_SCHEDULED_CHANGE, obj)
        return True


@extend_schema_view(
    create=extend_schema(
        description=(
            "Schedule a change (or, with a JSON array body, up to 1,000 changes at once, all or none). "
            "It is validated now exactly like the immediate request, and needs the same permission. "
            "It runs with the rights its creator has when it runs."
        ),
        request=ONE_OR_MANY_CHANGES,
        responses={
            201: OpenApiResponse(ONE_OR_MANY_CHANGES, description="The change, or the batch."),
            400: OpenApiResponse(
                {"oneOf": [FIELD_ERRORS_REF, {"type": "array", "items": FIELD_ERRORS_REF}]},
                description="The messages per field; for a batch, one object per change, in order (empty if valid).",
            ),
            429: OpenApiResponse(description=SCHEDULING_LIMITS_DESCRIPTION),
        },
    ),
    destroy=extend_schema(
        description="Cancel a change that has not started: by its creator, or who may delete that school's changes.",
        responses={
            204: OpenApiResponse(description="Cancelled."),
            409: OpenApiResponse(description="It has already started or finished."),
        },
    ),
)
class ScheduledChangeViewSet(
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    queryset = ScheduledChange.objects.select_related("created_by")
    serializer_class = ScheduledChangeSerializer
    permission_classes = [permissions.IsAuthenticated, ScheduledChangePermissions]
    filterset_class = ScheduledChangeFilter
    ordering_fields = ["execute_at", "created_at"]
    ordering = ["execute_at"]

    def get_queryset(self):
        queryset = super().get_queryset()
        visible = access.scoped(queryset, self.request.user)
        if self.action in ("destroy", "cancel"):
            # A creator may cancel their own changes, also where they cannot read the school's.
            return visible | queryset.filter(created_by_id=self.request.user.pk)
        return visible

    def create(self, request, *args, **kwargs):
        many = isinstance(request.data, list)
        if many and len(request.data) > MAX_BATCH_SIZE:
            raise ValidationError({"non_field_errors": [f"At most {MAX_BATCH_SIZE} changes per request."]})
        serializer = self.get_serializer(data=request.data, many=many)
        serializer.is_valid(raise_exception=True)
        changes = serializer.validated_data if many else [serializer.validated_data]
        for change in changes:
            refusal = permission_refusal(request.user, change["resource"], change["operation"])
            if refusal:
                raise PermissionDenied(refusal)
        try:
            created = scheduled_changes_create(changes, actor=request.user)
        except InvalidChangesError as exc:
            raise ValidationError(exc.errors if many else exc.errors[0]) from exc
        except SchedulingLimitError as exc:
            raise Throttled(wait=exc.retry_after, detail=str(exc)) from exc
        output = self.get_serializer(created if many else created[0], many=many)
        return Response(output.data, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=ScheduledChangeCancelSerializer,
        responses=ScheduledChangeCancelResultSerializer,
        description=("Cancel up to 1,000 changes at once: those you created or may delete, and that have not started."),
    )
    @action(detail=False, methods=["post"])
    def cancel(self, request):
        serializer = ScheduledChangeCancelSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        ids = serializer.validated_data["ids"]
        allowed = [
            change.pk
            for change in self.get_queryset().filter(pk__in=ids)
            if request.user.has_perm(access.CANCEL_SCHEDULED_CHANGE, change)
        ]
        return Response(scheduled_changes_cancel(ids=ids, allowed=allowed))

    def perform_destroy(self, instance):
        scheduled_change_cancel(change=instance, actor=signed_in_user(self.request))
