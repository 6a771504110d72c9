"""factory_boy factories that create records through the services, so each one is logged."""

import factory
from django.contrib.auth import get_user_model

from schools.models import Grade, School, SchoolClass, Student, Teacher
from schools.services import record_add


class RecordFactory(factory.django.DjangoModelFactory):
    class Meta:
        abstract = True

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        return record_add(instance=model_class(*args, **kwargs))


class SchoolFactory(RecordFactory):
    class Meta:
        model = School

    name = factory.Sequence(lambda n: f"School {n}")
    address = factory.Faker("address")


class GradeFactory(RecordFactory):
    class Meta:
        model = Grade

    school = factory.SubFactory(SchoolFactory)
    level = factory.Sequence(lambda n: n % 12 + 1)
    name = factory.LazyAttribute(lambda grade: f"Grade {grade.level}")


class TeacherFactory(RecordFactory):
    class Meta:
        model = Teacher

    school = factory.SubFactory(SchoolFactory)
    first_name = factory.Faker("first_name")
    last_name = factory.Faker("last_name")
    email = factory.Sequence(lambda n: f"teacher{n}@example.org")


def class_with_homeroom_teacher() -> SchoolClass:
    grade = GradeFactory()
    return SchoolClassFactory(grade=grade, homeroom_teacher=TeacherFactory(school=grade.school))


class SchoolClassFactory(RecordFactory):
    class Meta:
        model = SchoolClass

    grade = factory.SubFactory(GradeFactory)
    name = factory.Sequence(lambda n: f"Class {n}")
    homeroom_teacher = None


class StudentFactory(RecordFactory):
    class Meta:
        model = Student

    school_class = factory.SubFactory(SchoolClassFactory)
    first_name = factory.Faker("first_name")
    last_name = factory.Faker("last_name")
    student_number = factory.Sequence(lambda n: f"N{n:06d}")


USER_PASSWORD = "correct horse battery staple"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.django.Password(USER_PASSWORD)

    @factory.post_generation
    def permissions(self, create, codenames, **kwargs):
        """UserFactory(permissions=["schools.add_school", ...])."""
        if not create or not codenames:
            return
        from django.contrib.auth.models import Permission

        for codename in codenames:
            app_label, name = codename.split(".")
            self.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=name))
