"""Load a small set of demo schools through the services, and a demo superuser."""

import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from schools.models import School
from schools.services import grade_create, school_class_create, school_create, student_create, teacher_create

DEMO_USERNAME = "admin"
CREDENTIALS_FILE = settings.VAR_DIR / "demo-admin-password.txt"

DEMO_SCHOOLS = [
    {
        "name": "Northside Primary",
        "address": "12 Elm Street, Springfield",
        "grades": [(1, "Grade 1"), (2, "Grade 2")],
        "teachers": [("Ada", "Lovelace"), ("Alan", "Turing"), ("Grace", "Hopper")],
    },
    {
        "name": "Riverside Secondary",
        "address": "3 Mill Lane, Springfield",
        "grades": [(7, "Year 7"), (8, "Year 8")],
        "teachers": [("Edsger", "Dijkstra"), ("Barbara", "Liskov"), ("Donald", "Knuth")],
    },
]
CLASSES_PER_GRADE = ["A", "B"]
STUDENTS = [("Mia", "Schmidt"), ("Noah", "Jones"), ("Lena", "García"), ("Omar", "Haddad")]


class Command(BaseCommand):
    help = "Create demo schools, grades, classes, teachers and students (once) and a demo superuser."

    def handle(self, *args, **options):
        self._ensure_superuser()
        if School.objects.exists():
            self.stdout.write("Records exist already; demo records not loaded again.")
            return
        with transaction.atomic():
            created = sum(self._load_school(spec, index) for index, spec in enumerate(DEMO_SCHOOLS, start=1))
        self.stdout.write(self.style.SUCCESS(f"Loaded {created} demo records, each with its operation log entry."))

    def _load_school(self, spec: dict, school_index: int) -> int:
        school = school_create(name=spec["name"], address=spec["address"])
        teachers = [
            teacher_create(
                school=school,
                first_name=first,
                last_name=last,
                email=f"{first}.{last}@school{school_index}.example".lower(),
            )
            for first, last in spec["teachers"]
        ]
        created = 1 + len(teachers)
        number = 0
        for level, grade_name in spec["grades"]:
            grade = grade_create(school=school, level=level, name=grade_name)
            created += 1
            for letter, teacher in zip(CLASSES_PER_GRADE, teachers, strict=False):
                school_class = school_class_create(grade=grade, name=f"{level}{letter}", homeroom_teacher=teacher)
                created += 1
                for first, last in STUDENTS:
                    number += 1
                    student_create(
                        school_class=school_class,
                        first_name=first,
                        last_name=last,
                        student_number=f"S{school_index}-{number:04d}",
                    )
                    created += 1
        return created

    def _ensure_superuser(self) -> None:
        user_model = get_user_model()
        if user_model.objects.filter(username=DEMO_USERNAME).exists():
            if CREDENTIALS_FILE.exists():
                self._print_credentials(CREDENTIALS_FILE.read_text().strip())
            else:
                self.stdout.write(f"User {DEMO_USERNAME!r} exists already; its password was not changed.")
            return
        password = secrets.token_urlsafe(12)
        user_model.objects.create_superuser(DEMO_USERNAME, email="", password=password)
        CREDENTIALS_FILE.parent.mkdir(exist_ok=True)
        CREDENTIALS_FILE.write_text(password + "\n")
        CREDENTIALS_FILE.chmod(0o600)
        self._print_credentials(password)

    def _print_credentials(self, password: str) -> None:
        self.stdout.write(
            self.style.SUCCESS(f"Demo superuser: username {DEMO_USERNAME!r}, password {password!r} (saved in var/).")
        )
