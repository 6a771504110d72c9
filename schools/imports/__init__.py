"""Term-start imports: a school's students, teachers or classes from a spreadsheet, and the export back."""
