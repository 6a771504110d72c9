"""REST endpoints for imports: preview (dry run) or start one, follow it, and export a school's records."""

from typing import TYPE_CHECKING

from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import mixins, permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response

from config.api import signed_in_user
from schools.imports import files
from schools.imports.models import ImportKind, ImportStatus, RecordImport
from schools.imports.plans import RowPlan
from schools.imports.services import (
    ImportRefused,
    Preview,
    delivery,
    import_preview,
    import_start,
    permission_refusal,
    progress,
    readable_kinds,
    visible_to,
)
from schools.models import School
from schools.serializers import InUsersSchoolsField

if TYPE_CHECKING:
    from django.contrib.auth.models import User


class ImportRequestSerializer(serializers.Serializer):
    file = serializers.FileField(help_text=f"A .csv or .xlsx file of at most {files.MAX_IMPORT_ROWS} rows.")
    kind = serializers.ChoiceField(choices=ImportKind.choices)
    school = InUsersSchoolsField(queryset=School.objects.all())
    dry_run = serializers.BooleanField(default=False, help_text="Only show what the import would do.")


class RowSerializer(serializers.Serializer):
    line = serializers.IntegerField(help_text="The row's line in the file; the header is line 1.")
    action = serializers.ChoiceField(choices=["create", "update", "unchanged", "error"])
    values = serializers.DictField(child=serializers.CharField(allow_blank=True))
    # A field named "errors": the metaclass moves it out of the class, so Serializer.errors stays a property.
    errors = serializers.DictField(child=serializers.ListField(child=serializers.CharField()))  # type: ignore[assignment]


class PreviewSerializer(serializers.Serializer):
    counts = serializers.DictField(child=serializers.IntegerField())
    rows = RowSerializer(many=True)


class DeliverySerializer(serializers.Serializer):
    entries = serializers.IntegerField(help_text="Operation log entries the import recorded.")
    delivered = serializers.IntegerField(help_text="Of those, received by the other system.")
    to_send_before_done = serializers.IntegerField(help_text="Entries of the lane to send until the import's last.")
    push_rate_per_minute = serializers.FloatField(help_text="The lane's pushes a minute over the last 5 minutes.")
    eta_seconds = serializers.FloatField(allow_null=True, help_text="Null until the lane has pushed recently.")
    eta = serializers.DateTimeField(allow_null=True)


class ImportSerializer(serializers.ModelSerializer):
    status = serializers.SerializerMethodField()
    rows_done = serializers.SerializerMethodField()
    created_by: "serializers.SlugRelatedField[User]" = serializers.SlugRelatedField(
        slug_field="username", read_only=True
    )
    delivery = serializers.SerializerMethodField()

    class Meta:
        model = RecordImport
        fields = [
            "id",
            "kind",
            "school",
            "file_name",
            "status",
            "rows_total",
            "rows_done",
            "created",
            "updated",
            "unchanged",
            "errors",
            "lane",
            "first_sequence",
            "last_sequence",
            "delivery",
            "created_by",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.ChoiceField(choices=ImportStatus.choices))
    def get_status(self, record_import) -> str:
        return progress(record_import)[0]

    @extend_schema_field(OpenApiTypes.INT)
    def get_rows_done(self, record_import) -> int:
        return progress(record_import)[1]

    @extend_schema_field(DeliverySerializer(allow_null=True, help_text="On the import's own page, once written."))
    def get_delivery(self, record_import):
        if self.context.get("view") is not None and self.context["view"].action == "list":
            return None  # four counts per import: on its own page only, not per item of a list
        figures = delivery(record_import, timezone.now())
        return DeliverySerializer(figures).data if figures is not None else None


def preview_data(preview: Preview) -> dict:
    return {"counts": preview.counts(), "rows": [_row(row) for row in preview.plans]}


def _row(row: RowPlan) -> dict:
    return {"line": row.line, "action": row.action, "values": row.values, "errors": row.errors}


class ImportViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Imports into the user's schools, of the kinds of record they may read."""

    queryset = RecordImport.objects.select_related("created_by").defer("rows")
    serializer_class = ImportSerializer
    permission_classes = [permissions.IsAuthenticated]
    filterset_fields = ["school", "kind", "status"]
    ordering_fields = ["created_at"]
    ordering = ["-created_at"]

    def get_queryset(self):
        return visible_to(signed_in_user(self.request), super().get_queryset())

    @extend_schema(
        request={"multipart/form-data": ImportRequestSerializer},
        responses={
            200: OpenApiResponse(PreviewSerializer, description="dry_run: what the import would do, row by row."),
            202: OpenApiResponse(ImportSerializer, description="Queued: it is written in the background."),
            400: OpenApiResponse(
                {"anyOf": [{"$ref": "#/components/schemas/Preview"}, {"$ref": "#/components/schemas/FieldErrors"}]},
                description="Rows with errors (nothing written), or a file that cannot be read; or messages per field.",
            ),
        },
        description=(
            f"Import a school's students, teachers or classes from a CSV or XLSX file of at most "
            f"{files.MAX_IMPORT_ROWS} rows. Students are matched by student number, teachers by e-mail, "
            "classes by grade and name; a matched record is updated, the others created. All rows or none, "
            "each through the same services as a single change, in file order."
        ),
    )
    def create(self, request, *args, **kwargs):
        serializer = ImportRequestSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        kind, school = serializer.validated_data["kind"], serializer.validated_data["school"]
        user = signed_in_user(request)
        refusal = permission_refusal(user, kind)
        if refusal:
            raise PermissionDenied(refusal)
        upload = serializer.validated_data["file"]
        try:
            if serializer.validated_data["dry_run"]:
                preview, _ = import_preview(kind=kind, school=school, upload=upload, user=user)
                return Response(preview_data(preview))
            record_import = import_start(kind=kind, school=school, upload=upload, user=user)
        except ImportRefused as refused:
            return Response(preview_data(Preview(refused.plans)), status=status.HTTP_400_BAD_REQUEST)
        return Response(ImportSerializer(record_import).data, status=status.HTTP_202_ACCEPTED)

    def get_parsers(self):
        if getattr(self, "action", None) == "create":
            return [MultiPartParser()]
        return super().get_parsers()

    @extend_schema(
        parameters=[
            OpenApiParameter("school", int, required=True),
            OpenApiParameter("kind", str, enum=ImportKind.values, required=True),
            OpenApiParameter("file_format", str, enum=list(files.FORMATS), required=False),
        ],
        responses={(200, "text/csv"): OpenApiTypes.BINARY, (200, files.FORMATS["xlsx"]): OpenApiTypes.BINARY},
        description="A school's records of a kind, in the columns an import takes.",
    )
    @action(detail=False, methods=["get"])
    def export(self, request):
        query = ExportQuerySerializer(data=request.query_params, context={"request": request})
        query.is_valid(raise_exception=True)
        kind, school = query.validated_data["kind"], query.validated_data["school"]
        if kind not in readable_kinds(signed_in_user(request)):
            raise PermissionDenied(f"You may not read {kind}.")
        file_format = query.validated_data["file_format"]
        response = HttpResponse(files.export(school, kind, file_format), content_type=files.FORMATS[file_format])
        response["Content-Disposition"] = f'attachment; filename="{kind}-school-{school.pk}.{file_format}"'
        return response


class ExportQuerySerializer(serializers.Serializer):
    school = InUsersSchoolsField(queryset=School.objects.all())
    kind = serializers.ChoiceField(choices=ImportKind.choices)
    file_format = serializers.ChoiceField(choices=list(files.FORMATS), default="csv")
