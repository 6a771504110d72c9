"""School records: schools, their grades, classes, teachers and students.

Rules that span rows live in ``clean()``, which the services and the admin forms both run;
the scheduled change model lives with the rest of scheduling and is imported at the end."""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models.functions import Lower

from schools.validators import MAX_ADDRESS_LENGTH, validate_name, validate_text

MIN_GRADE_LEVEL = 1
MAX_GRADE_LEVEL = 12

HOMEROOM_TEACHER_OF_OTHER_SCHOOL = "The homeroom teacher must teach at the class's school."
TEACHER_HOMEROOM_IN_OLD_SCHOOL = (
    "This teacher is the homeroom teacher of {classes} at their current school; "
    "assign those classes another homeroom teacher before moving the teacher."
)
GRADE_MOVE_HOMEROOM_TEACHERS = (
    "The homeroom teachers of {classes} teach at the grade's current school; "
    "assign those classes a teacher of the new school (or none) before moving the grade."
)
MOVE_STUDENT_NUMBERS_TAKEN = (
    "The new school already has students with the numbers {numbers}; change those numbers before the move."
)
GRADE_LEVEL_TAKEN = "This school already has a grade at this level."
GRADE_LEVEL_OUT_OF_RANGE = f"Grade level must be between {MIN_GRADE_LEVEL} and {MAX_GRADE_LEVEL}."
CLASS_NAME_TAKEN = "This grade already has a class with this name."
TEACHER_EMAIL_TAKEN = "A teacher with this email address already exists."
STUDENT_NUMBER_TAKEN = "A student with this student number already exists at this school."


class TimestampedModel(models.Model):
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class School(TimestampedModel):
    name = models.CharField(max_length=200, unique=True, validators=[validate_name])
    address = models.TextField(blank=True, max_length=MAX_ADDRESS_LENGTH, validators=[validate_text])

    class Meta:
        ordering = ["name"]
        permissions = [("access_all_schools", "Can act on the records of every school (district staff)")]

    def __str__(self) -> str:
        return self.name


class Grade(TimestampedModel):
    school = models.ForeignKey(School, on_delete=models.PROTECT, related_name="grades")
    level = models.PositiveSmallIntegerField(
        validators=[MinValueValidator(MIN_GRADE_LEVEL), MaxValueValidator(MAX_GRADE_LEVEL)]
    )
    name = models.CharField(max_length=100, validators=[validate_name])

    class Meta:
        ordering = ["school_id", "level"]
        constraints = [
            models.UniqueConstraint(
                fields=["school", "level"],
                name="grade_level_unique_per_school",
                violation_error_message=GRADE_LEVEL_TAKEN,
            ),
            models.CheckConstraint(
                condition=models.Q(level__gte=MIN_GRADE_LEVEL, level__lte=MAX_GRADE_LEVEL),
                name="grade_level_range",
                violation_error_message=(f"Grade level must be between {MIN_GRADE_LEVEL} and {MAX_GRADE_LEVEL}."),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name}, {self.school}"

    def clean(self) -> None:
        """A grade moves to another school with its classes and students, if they can go along."""
        moving = Grade.objects.filter(pk=self.pk).exclude(school_id=self.school_id)
        if not (self.pk and self.school_id) or not moving.exists():
            return
        classes = SchoolClass.objects.filter(grade_id=self.pk)
        errors = []
        staying = classes.filter(homeroom_teacher__isnull=False).exclude(homeroom_teacher__school_id=self.school_id)
        if staying.exists():
            errors.append(GRADE_MOVE_HOMEROOM_TEACHERS.format(classes=_names(staying)))
        taken = _numbers_taken_at(self.school_id, Student.objects.filter(school_class__in=classes))
        if taken:
            errors.append(MOVE_STUDENT_NUMBERS_TAKEN.format(numbers=taken))
        if errors:
            raise ValidationError({"school": errors})

    def carry_along(self) -> None:
        """After a move: the grade's students belong to its new school."""
        Student.objects.filter(school_class__grade_id=self.pk).exclude(school_id=self.school_id).update(
            school_id=self.school_id
        )


class Teacher(TimestampedModel):
    school = models.ForeignKey(School, on_delete=models.PROTECT, related_name="teachers")
    first_name = models.CharField(max_length=100, validators=[validate_name])
    last_name = models.CharField(max_length=100, validators=[validate_name])
    email = models.EmailField(max_length=254)

    class Meta:
        ordering = ["last_name", "first_name", "id"]
        constraints = [
            models.UniqueConstraint(
                Lower("email"),
                name="teacher_email_unique_ci",
                violation_error_message=TEACHER_EMAIL_TAKEN,
            ),
        ]

    def __str__(self) -> str:
        return f"{self.first_name} {self.last_name}"

    def clean(self) -> None:
        errors = {}
        if self.pk and self.school_id:
            homeroom_elsewhere = SchoolClass.objects.filter(homeroom_teacher_id=self.pk).exclude(
                grade__school_id=self.school_id
            )
            if homeroom_elsewhere.exists():
                errors["school"] = TEACHER_HOMEROOM_IN_OLD_SCHOOL.format(classes=_names(homeroom_elsewhere))
        # Case-insensitive, like the constraint, but reported against the field.
        if self.email:
            taken = (
                Teacher.objects.alias(email_lower=Lower("email"))
                .filter(email_lower=self.email.lower())
                .exclude(pk=self.pk)
            )
            if taken.exists():
                errors["email"] = TEACHER_EMAIL_TAKEN
        if errors:
            raise ValidationError(errors)


class SchoolClass(TimestampedModel):
    grade = models.ForeignKey(Grade, on_delete=models.PROTECT, related_name="classes")
    name = models.CharField(max_length=100, validators=[validate_name])
    homeroom_teacher = models.ForeignKey(
        Teacher,
        on_delete=models.PROTECT,
        related_name="homeroom_classes",
        null=True,
        blank=True,
    )

    class Meta:
        verbose_name = "class"
        verbose_name_plural = "classes"
        ordering = ["grade_id", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["grade", "name"],
                name="class_name_unique_per_grade",
                violation_error_message=CLASS_NAME_TAKEN,
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.grade})"

    def clean(self) -> None:
        # In the admin's "add grade" page the inline classes hold the grade before it is saved.
        if self.grade_id is None and not SchoolClass.grade.is_cached(self):
            return
        school_id = self.grade.school_id
        teacher = self.homeroom_teacher if self.homeroom_teacher_id else None
        if teacher is not None and teacher.school_id != school_id:
            raise ValidationError({"homeroom_teacher": HOMEROOM_TEACHER_OF_OTHER_SCHOOL})
        # A class moved to a grade of another school takes its students along, if their numbers are free there.
        if self.pk and SchoolClass.objects.filter(pk=self.pk).exclude(grade__school_id=school_id).exists():
            taken = _numbers_taken_at(school_id, Student.objects.filter(school_class_id=self.pk))
            if taken:
                raise ValidationError({"grade": MOVE_STUDENT_NUMBERS_TAKEN.format(numbers=taken)})

    def carry_along(self) -> None:
        """After a move: the class's students belong to its new school."""
        school_id = self.grade.school_id
        Student.objects.filter(school_class_id=self.pk).exclude(school_id=school_id).update(school_id=school_id)


class Student(TimestampedModel):
    school_class = models.ForeignKey(SchoolClass, on_delete=models.PROTECT, related_name="students")
    # Derived from school_class in clean() so that the database itself enforces
    # "student number unique within the school".
    school = models.ForeignKey(
        School,
        on_delete=models.PROTECT,
        related_name="students",
        blank=True,
        editable=False,
        help_text="The school of the student's class.",
    )
    first_name = models.CharField(max_length=100, validators=[validate_name])
    last_name = models.CharField(max_length=100, validators=[validate_name])
    student_number = models.CharField(max_length=32, validators=[validate_name])

    class Meta:
        ordering = ["last_name", "first_name", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["school", "student_number"],
                name="student_number_unique_per_school",
                violation_error_message=STUDENT_NUMBER_TAKEN,
            ),
        ]

    def __str__(self) -> str:
        return f"{self.first_name} {self.last_name} ({self.student_number})"

    def clean(self) -> None:
        if not self.school_class_id:
            return
        self.school_id = self.school_class.grade.school_id
        # Checked here as well as by the constraint: admin forms leave the derived
        # ``school`` field out of constraint validation.
        taken = (
            Student.objects.filter(school_id=self.school_id, student_number=self.student_number)
            .exclude(pk=self.pk)
            .exists()
        )
        if taken:
            raise ValidationError({"student_number": STUDENT_NUMBER_TAKEN})


class SchoolMembership(models.Model):
    """A user who acts on one school's records, within what their permissions allow."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="school_memberships")
    school = models.ForeignKey(School, on_delete=models.CASCADE, related_name="memberships")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["school", "user"]
        constraints = [
            models.UniqueConstraint(fields=["user", "school"], name="membership_unique_per_user_and_school"),
        ]

    def __str__(self) -> str:
        return f"{self.user} at {self.school}"


def school_id_of(record: models.Model) -> int | None:
    """The school a record belongs to, as its parents are now; a new school has none yet."""
    if isinstance(record, School):
        return record.pk
    if isinstance(record, Grade | Teacher | SchoolMembership):
        return record.school_id
    if isinstance(record, SchoolClass):
        return record.grade.school_id
    if isinstance(record, Student):
        return record.school_class.grade.school_id
    raise TypeError(f"{type(record).__name__} belongs to no school")


MAX_NAMED = 5
"""Records named in one message; the rest are counted."""


def _names(records: models.QuerySet) -> str:
    """“1A”, “1B” and 3 more: the records an error is about, for a person to find them."""
    names = [f"“{record}”" for record in records[: MAX_NAMED + 1]]
    if len(names) <= MAX_NAMED:
        return ", ".join(names)
    more = records.count() - MAX_NAMED
    return f"{', '.join(names[:MAX_NAMED])} and {more} more"


def _numbers_taken_at(school_id: int, moving: models.QuerySet) -> str:
    """The student numbers of ``moving`` that students of the school already have, for a message."""
    numbers = list(
        Student.objects.filter(school_id=school_id, student_number__in=moving.values("student_number"))
        .exclude(pk__in=moving.values("pk"))
        .order_by("student_number")
        .values_list("student_number", flat=True)[: MAX_NAMED + 1]
    )
    if len(numbers) > MAX_NAMED:
        return ", ".join(numbers[:MAX_NAMED]) + " and more"
    return ", ".join(numbers)


# Django finds every model of the app through this module.
from schools.imports.models import RecordImport  # noqa: E402
from schools.scheduling.models import ScheduledChange, ScheduledChangeStatus  # noqa: E402

__all__ = [
    "Grade",
    "RecordImport",
    "ScheduledChange",
    "ScheduledChangeStatus",
    "School",
    "SchoolClass",
    "SchoolMembership",
    "Student",
    "Teacher",
    "school_id_of",
]
