"""A school's import pages in the admin: upload, preview, confirm, follow an import, export."""

import re
import uuid
from dataclasses import dataclass
from typing import cast

from django import forms
from django.contrib import admin, messages
from django.core.cache import cache
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile, UploadedFile
from django.db import models
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.views.decorators.http import require_POST

from config.api import signed_in_user
from schools.imports import files
from schools.imports.models import ImportKind, RecordImport
from schools.imports.plans import KINDS, Action, RowPlan
from schools.imports.services import (
    RATE_WINDOW_SECONDS,
    ImportRefused,
    Preview,
    import_preview,
    import_start,
    permission_refusal,
    progress,
    readable_kinds,
    visible_to,
)
from schools.models import School

HELD_UPLOAD_SECONDS = 60 * 60
"""How long a previewed file is kept for its confirmation; after that it is uploaded again."""
RECENT_IMPORTS_SHOWN = 10

UPLOAD_NOT_HELD = "The previewed file is no longer kept (a preview lasts an hour): upload it again."
QUEUED = "The import of {rows} {kind} from {file} is queued. This page follows it; the school's import page lists it."
REFUSED = "Nothing was written: rows changed since the preview and can no longer be imported."
MAY_IMPORT_NOTHING = (
    "You may not import into this school: importing a kind of record needs its add and change permissions."
)

_TOKEN = re.compile(r"^[0-9a-f]{32}$")


class ImportForm(forms.Form):
    kind = forms.ChoiceField()
    file = forms.FileField(
        help_text=(
            f"A .csv or .xlsx file of at most {files.MAX_IMPORT_ROWS} rows and "
            f"{files.MAX_IMPORT_FILE_BYTES // (1024 * 1024)} MB; its first row names the columns."
        )
    )

    def __init__(self, *args, kinds: list[str], **kwargs):
        super().__init__(*args, **kwargs)
        cast(forms.ChoiceField, self.fields["kind"]).choices = [(kind, ImportKind(kind).label) for kind in kinds]


@dataclass
class PreviewCell:
    value: str
    errors: list[str]
    changed: bool = False
    was: str | None = None
    """What an update replaces, for a field of the record itself (not for a reference to another record)."""


@dataclass
class PreviewRow:
    line: int
    action: str
    cells: list[PreviewCell]
    """In the kind's column order."""
    other_errors: list[str]
    """Errors not about one column (the row as a whole)."""


class SchoolImports:
    """The import pages of each school the user may act on, under the school's admin URLs."""

    def __init__(self, school_admin: admin.ModelAdmin):
        self.school_admin = school_admin

    def get_urls(self) -> list[URLPattern]:
        view = self.school_admin.admin_site.admin_view
        return [
            path("<int:school_id>/imports/", view(self.import_view), name="schools_school_imports"),
            path(
                "<int:school_id>/imports/confirm/",
                view(require_POST(self.confirm_view)),
                name="schools_school_import_confirm",
            ),
            path("<int:school_id>/imports/<uuid:import_id>/", view(self.status_view), name="schools_school_import"),
        ]

    def import_view(self, request: HttpRequest, school_id: int) -> HttpResponse:
        school = self._school(request, school_id)
        user = signed_in_user(request)
        kinds = [kind for kind in ImportKind.values if permission_refusal(user, kind) is None]
        form = ImportForm(request.POST or None, request.FILES or None, kinds=kinds)
        if request.method == "POST":
            posted_kind = request.POST.get("kind", "")
            refusal = permission_refusal(user, posted_kind) if posted_kind in ImportKind.values else None
            if refusal:
                raise PermissionDenied(refusal)
            if form.is_valid():
                kind, upload = form.cleaned_data["kind"], form.cleaned_data["file"]
                try:
                    preview, _ = import_preview(kind=kind, school=school, upload=upload, user=user)
                except ValidationError as exc:
                    form.add_error(None, exc)
                else:
                    token = None if preview.has_errors else _hold(upload, user=user.pk, school=school.pk, kind=kind)
                    return self._preview(request, school, kind, upload.name or "", preview, token)
        viewable = _readable_kinds(request)
        recent = _visible_imports(request).filter(school=school).defer("rows")[:RECENT_IMPORTS_SHOWN]
        context = {
            **self._context(request, school, f"Import into {school}"),
            "form": form if kinds else None,
            "may_import_nothing": MAY_IMPORT_NOTHING,
            "columns": [(ImportKind(kind).label, files.COLUMNS[kind]) for kind in kinds],
            "exports": [(ImportKind(kind).label, _export_links(school, kind)) for kind in viewable],
            "recent": [(record_import, progress(record_import)[0]) for record_import in recent],
        }
        return TemplateResponse(request, "admin/schools/school/imports.html", context)

    def confirm_view(self, request: HttpRequest, school_id: int) -> HttpResponse:
        school = self._school(request, school_id)
        user = signed_in_user(request)
        token = request.POST.get("token", "")
        key = _held_key(token) if _TOKEN.match(token) else None
        held = cache.get(key) if key else None
        if key is None or held is None or (held["user"], held["school"]) != (user.pk, school.pk):
            messages.error(request, UPLOAD_NOT_HELD)
            return HttpResponseRedirect(reverse("admin:schools_school_imports", args=[school.pk]))
        kind = held["kind"]
        refusal = permission_refusal(user, kind)
        if refusal:
            raise PermissionDenied(refusal)
        if not cache.delete(key):  # a second click of the button: the first one has it
            messages.error(request, UPLOAD_NOT_HELD)
            return HttpResponseRedirect(reverse("admin:schools_school_imports", args=[school.pk]))
        upload = SimpleUploadedFile(held["name"], held["content"])
        try:
            record_import = import_start(kind=kind, school=school, upload=upload, user=user)
        except ImportRefused as refused:
            return self._preview(request, school, kind, held["name"], Preview(refused.plans), None, refused=True)
        messages.success(request, QUEUED.format(rows=record_import.rows_total, kind=kind, file=record_import.file_name))
        return HttpResponseRedirect(reverse("admin:schools_school_import", args=[school.pk, record_import.pk]))

    def status_view(self, request: HttpRequest, school_id: int, import_id: uuid.UUID) -> HttpResponse:
        school = self._school(request, school_id)
        record_import = get_object_or_404(_visible_imports(request).filter(school=school).defer("rows"), pk=import_id)
        status, rows_done = progress(record_import)
        context = {
            **self._context(request, school, f"Import of {record_import.kind} from {record_import.file_name}"),
            "record_import": record_import,
            "status": status,
            "rows_done": rows_done,
            "percent": rows_done * 100 // max(record_import.rows_total, 1),
            "api_url": reverse("recordimport-detail", args=[record_import.pk]),
            "rate_window_minutes": RATE_WINDOW_SECONDS // 60,
        }
        return TemplateResponse(request, "admin/schools/school/import_status.html", context)

    def _school(self, request: HttpRequest, school_id: int) -> School:
        return get_object_or_404(self.school_admin.get_queryset(request), pk=school_id)

    def _context(self, request: HttpRequest, school: School, title: str) -> dict:
        return {
            **self.school_admin.admin_site.each_context(request),
            "title": title,
            "opts": School._meta,
            "school": school,
        }

    def _preview(
        self,
        request: HttpRequest,
        school: School,
        kind: str,
        file_name: str,
        preview: Preview,
        token: str | None,
        refused: bool = False,
    ) -> TemplateResponse:
        columns = files.COLUMNS[kind]
        context = {
            **self._context(request, school, f"Preview: {file_name} into {school}"),
            "kind": ImportKind(kind).label,
            "file_name": file_name,
            "columns": columns,
            "counts": preview.counts(),
            "rows": [_preview_row(kind, row, columns) for row in preview.plans],
            "error_lines": [row.line for row in preview.plans if row.errors],
            "token": token,
            "refused": REFUSED if refused else None,
        }
        return TemplateResponse(request, "admin/schools/school/import_preview.html", context)


def _held_key(token: str) -> str:
    return f"schools:import:upload:{token}"


def _hold(upload: UploadedFile, **owner: object) -> str:
    """Keep the previewed file (in the cache every web process shares) until it is confirmed; its token."""
    token = uuid.uuid4().hex
    upload.seek(0)
    cache.set(_held_key(token), {**owner, "name": upload.name, "content": upload.read()}, HELD_UPLOAD_SECONDS)
    return token


def _visible_imports(request: HttpRequest):
    """The imports the user may follow, as the API shows them: of their schools, of kinds they may read."""
    return visible_to(signed_in_user(request), RecordImport.objects.select_related("created_by"))


def _readable_kinds(request: HttpRequest) -> list[str]:
    return readable_kinds(signed_in_user(request))


def _export_links(school: School, kind: str) -> list[tuple[str, str]]:
    url = reverse("recordimport-export")
    return [
        (file_format.upper(), f"{url}?school={school.pk}&kind={kind}&file_format={file_format}")
        for file_format in files.FORMATS
    ]


def _preview_row(kind: str, row: RowPlan, columns: list[str]) -> PreviewRow:
    changed = _changed_columns(kind, row) if row.action == Action.UPDATE else {}
    cells = [
        PreviewCell(row.values.get(column, ""), row.errors.get(column, []), column in changed, changed.get(column))
        for column in columns
    ]
    other_errors = [
        message if name == "row" else f"{name}: {message}"
        for name, messages_ in row.errors.items()
        if name not in columns
        for message in messages_
    ]
    return PreviewRow(row.line, row.action, cells, other_errors)


def _changed_columns(kind: str, row: RowPlan) -> dict[str, str | None]:
    """The columns whose values an update changes, each with the value it replaces (None: a reference)."""
    spec = KINDS[ImportKind(kind)]
    changed: dict[str, str | None] = {}
    for name, value in row.data.items():
        field = spec.model._meta.get_field(name)
        column = spec.columns.get(name, name)
        if isinstance(field, models.ForeignKey):  # compared by id: no query for the record it names now
            if getattr(row.record, field.attname) != getattr(value, "pk", value):
                changed[column] = None
        elif getattr(row.record, name) != value:
            changed[column] = str(getattr(row.record, name))
    return changed
