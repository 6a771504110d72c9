"""The REST representation of each record: API responses and OperationLog payloads.

They check types, lengths and that referenced ids exist; the services check the rest."""

from typing import TYPE_CHECKING, Any

from django.contrib.auth import get_user_model
from rest_framework import serializers

from schools import access
from schools.models import Grade, ScheduledChange, School, SchoolClass, SchoolMembership, Student, Teacher

if TYPE_CHECKING:
    from django.contrib.auth.models import User


class InUsersSchoolsField(serializers.PrimaryKeyRelatedField):
    """A reference to a record of the acting user's schools; any other id is "does not exist", a 400.

    The user is the request's, or ``context["user"]`` (a scheduled change runs as its creator).
    Without either, as when the services take a snapshot, nothing is narrowed.
    """

    def get_queryset(self):
        queryset = super().get_queryset()
        user = self.context.get("user") or getattr(self.context.get("request"), "user", None)
        return queryset if user is None or queryset is None else access.scoped(queryset, user)


class RecordSerializer(serializers.ModelSerializer):
    serializer_related_field = InUsersSchoolsField


class SchoolSerializer(RecordSerializer):
    class Meta:
        model = School
        fields = ["id", "name", "address"]
        # A PUT without "address" clears it (a PATCH leaves it alone).
        extra_kwargs = {"name": {"validators": []}, "address": {"default": ""}}


class GradeSerializer(RecordSerializer):
    class Meta:
        model = Grade
        fields = ["id", "school", "level", "name"]
        validators: list[Any] = []


class SchoolClassSerializer(RecordSerializer):
    class Meta:
        model = SchoolClass
        fields = ["id", "grade", "name", "homeroom_teacher"]
        # A PUT without "homeroom_teacher" clears it (a PATCH leaves it alone).
        extra_kwargs = {"homeroom_teacher": {"default": None}}
        validators: list[Any] = []


class TeacherSerializer(RecordSerializer):
    class Meta:
        model = Teacher
        fields = ["id", "school", "first_name", "last_name", "email"]
        validators: list[Any] = []


class StudentSerializer(RecordSerializer):
    school_class = InUsersSchoolsField(queryset=SchoolClass.objects.select_related("grade"))

    class Meta:
        model = Student
        fields = ["id", "school_class", "first_name", "last_name", "student_number"]
        validators: list[Any] = []


class ScheduledChangeSerializer(serializers.ModelSerializer):
    created_by: "serializers.SlugRelatedField[User]" = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True, help_text="Who scheduled the change."
    )
    attempts = serializers.IntegerField(source="attempt_count", read_only=True)
    # A field named "data": the metaclass moves it out of the class, so Serializer.data stays
    # the property the stubs describe.
    data = serializers.JSONField(  # type: ignore[assignment]
        required=False, default=dict, help_text="The fields, as in the immediate request's body."
    )

    class Meta:
        model = ScheduledChange
        fields = [
            "id",
            "execute_at",
            "resource",
            "operation",
            "target_id",
            "data",
            "status",
            "due_at",
            "attempts",
            "error",
            "result_object_id",
            "created_by",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = [
            "status",
            "due_at",
            "error",
            "result_object_id",
            "created_at",
            "started_at",
            "finished_at",
        ]

    def validate_data(self, value):
        if not isinstance(value, dict):
            raise serializers.ValidationError("Must be an object of field values.")
        return value


class ScheduledChangeCancelSerializer(serializers.Serializer):
    ids = serializers.ListField(child=serializers.UUIDField(), min_length=1, max_length=1000)


class ScheduledChangeCancelResultSerializer(serializers.Serializer):
    cancelled = serializers.ListField(child=serializers.UUIDField())
    not_cancellable = serializers.ListField(child=serializers.UUIDField(), help_text="Already started or finished.")
    not_found = serializers.ListField(child=serializers.UUIDField(), help_text="Unknown, or not yours to cancel.")


class SchoolMemberSerializer(serializers.ModelSerializer):
    user = serializers.PrimaryKeyRelatedField(queryset=get_user_model().objects.all(), help_text="The user's id.")
    username = serializers.CharField(source="user.username", read_only=True)

    class Meta:
        model = SchoolMembership
        fields = ["user", "username"]
        validators: list[Any] = []
