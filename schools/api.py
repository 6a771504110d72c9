"""REST endpoints for the school records; every write is delegated to schools.services."""

from django_filters import rest_framework as filters
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import viewsets

from config.api import Conflict
from schools.models import Grade, School, SchoolClass, Student, Teacher
from schools.serializers import (
    GradeSerializer,
    SchoolClassSerializer,
    SchoolSerializer,
    StudentSerializer,
    TeacherSerializer,
)
from schools.services import RecordInUseError, delete_record, record_create, record_update


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
            model=serializer.Meta.model, data=serializer.validated_data, actor=self.request.user
        )

    def perform_update(self, serializer):
        serializer.instance = record_update(
            instance=serializer.instance, data=serializer.validated_data, actor=self.request.user
        )

    def perform_destroy(self, instance):
        try:
            delete_record(instance=instance, actor=self.request.user)
        except RecordInUseError as exc:
            raise Conflict(str(exc)) from exc


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
