"""REST endpoints for the school records; every write is delegated to schools.services."""

from django_filters import rest_framework as filters
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, permissions, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.response import Response

from config.api import signed_in_user
from schools.models import Grade, ScheduledChange, School, SchoolClass, Student, Teacher
from schools.scheduling.services import (
    InvalidChangesError,
    scheduled_change_cancel,
    scheduled_changes_cancel,
    scheduled_changes_create,
)
from schools.scheduling.validation import required_permission
from schools.serializers import (
    GradeSerializer,
    ScheduledChangeCancelResultSerializer,
    ScheduledChangeCancelSerializer,
    ScheduledChangeSerializer,
    SchoolClassSerializer,
    SchoolSerializer,
    StudentSerializer,
    TeacherSerializer,
)
from schools.services import record_create, record_delete, record_update
from sync.models import Operation, Resource


@extend_schema_view(
    destroy=extend_schema(
        responses={
            204: OpenApiResponse(description="Deleted."),
            409: OpenApiResponse(description="Refused: other records still reference this one."),
        }
    )
)
class RecordViewSet(viewsets.ModelViewSet):
    """CRUD for one kind of record; writes go through the services, which log the change."""

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


class GradeViewSet(RecordViewSet):
    queryset = Grade.objects.all()
    serializer_class = GradeSerializer
    filterset_fields = ["school", "level"]
    search_fields = ["name"]
    ordering_fields = ["id", "level", "name"]
    ordering = ["school", "level"]


class SchoolClassFilter(filters.FilterSet):
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


class TeacherViewSet(RecordViewSet):
    queryset = Teacher.objects.all()
    serializer_class = TeacherSerializer
    filterset_fields = ["school"]
    search_fields = ["first_name", "last_name", "email"]
    ordering_fields = ["id", "first_name", "last_name", "email"]
    ordering = ["last_name", "first_name", "id"]


class StudentFilter(filters.FilterSet):
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


MAX_BATCH_SIZE = 1000  # changes in one POST


class ScheduledChangeFilter(filters.FilterSet):
    due_before = filters.IsoDateTimeFilter(field_name="execute_at", lookup_expr="lte")
    due_after = filters.IsoDateTimeFilter(field_name="execute_at", lookup_expr="gte")

    class Meta:
        model = ScheduledChange
        fields = ["status", "resource", "operation", "due_before", "due_after"]


@extend_schema_view(
    create=extend_schema(
        description=(
            "Schedule a change (or, with a JSON array body, up to 1,000 changes at once, all or none). "
            "It is validated now exactly like the immediate request, and needs the same permission."
        )
    ),
    destroy=extend_schema(
        description="Cancel a change that has not started.",
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
    # Record permissions, checked per change: scheduling a change needs what making it needs.
    permission_classes = [permissions.IsAuthenticated]
    filterset_class = ScheduledChangeFilter
    ordering_fields = ["execute_at", "created_at"]
    ordering = ["execute_at"]

    def create(self, request, *args, **kwargs):
        many = isinstance(request.data, list)
        if many and len(request.data) > MAX_BATCH_SIZE:
            raise ValidationError({"non_field_errors": [f"At most {MAX_BATCH_SIZE} changes per request."]})
        serializer = self.get_serializer(data=request.data, many=many)
        serializer.is_valid(raise_exception=True)
        changes = serializer.validated_data if many else [serializer.validated_data]
        for change in changes:
            self._check_permission(change["resource"], change["operation"])
        try:
            created = scheduled_changes_create(changes, actor=request.user)
        except InvalidChangesError as exc:
            raise ValidationError(exc.errors if many else exc.errors[0]) from exc
        output = self.get_serializer(created if many else created[0], many=many)
        return Response(output.data, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=ScheduledChangeCancelSerializer,
        responses=ScheduledChangeCancelResultSerializer,
        description="Cancel up to 1,000 changes at once: those of kinds you may make and that have not started.",
    )
    @action(detail=False, methods=["post"])
    def cancel(self, request):
        serializer = ScheduledChangeCancelSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        allowed = [
            (resource, operation)
            for resource in Resource.values
            for operation in Operation.values
            if request.user.has_perm(required_permission(resource, operation))
        ]
        return Response(scheduled_changes_cancel(ids=serializer.validated_data["ids"], allowed=allowed))

    def perform_destroy(self, instance):
        self._check_permission(instance.resource, instance.operation)
        scheduled_change_cancel(change=instance, actor=signed_in_user(self.request))

    def _check_permission(self, resource, operation):
        if not self.request.user.has_perm(required_permission(resource, operation)):
            raise PermissionDenied(f"You may not {operation} {resource}.")
