"""List filters whose choices are the user's schools' records: another school's is refused like an unknown id."""

from django_filters import rest_framework as filters

from schools import access


class InUsersSchoolsFilterSet(filters.FilterSet):
    """Filtering by a record (or lane) of another school is a 400, as for an id that does not exist,
    not an empty list that would tell the record exists."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        user = getattr(self.request, "user", None)
        for filter_ in self.filters.values():
            if isinstance(filter_, filters.ModelChoiceFilter) and user is not None:
                filter_.queryset = access.scoped(filter_.queryset, user)
