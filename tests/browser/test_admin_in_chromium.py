"""The admin in a real browser: sign in, create a school, find its log entry, open the dashboard, import a class list.

Headless Chromium (Debian's package) driven by Playwright. Screenshots go to SCREENSHOT_DIR
(var/screenshots; `make screenshots` writes the README's into docs/screenshots).
"""

import os
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.db import connections
from django.utils import timezone

from schools.imports import services as imports
from schools.imports.models import RecordImport
from schools.models import SchoolMembership
from sync.health import HEALTH_CACHE_KEY
from sync.models import DEFAULT_LANE, EntryStatus, OperationLog, SyncLane
from tests.conftest import ALL_RECORD_PERMISSIONS
from tests.factories import USER_PASSWORD, GradeFactory, SchoolClassFactory, SchoolFactory, StudentFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

BASE_DIR = Path(__file__).resolve().parents[2]
SCREENSHOT_DIR = Path(os.environ.get("SCREENSHOT_DIR") or BASE_DIR / "var" / "screenshots")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Keep Chromium off the network: this machine has none, and the test needs none.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def page(monkeypatch):
    if CHROMIUM is None:
        if os.environ.get("REQUIRE_BROWSER"):
            pytest.fail("Chromium is required (REQUIRE_BROWSER is set) but not installed")
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the test's own ORM calls are safe.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(15_000)
        yield page
        browser.close()
        # ORM calls made while Playwright's loop ran used connections of their own; close them.
        connections.close_all()


def a_day_of_history():
    """Demo records, most of them delivered over the last day, one refused by the external system."""
    call_command("load_demo_data", stdout=open(os.devnull, "w"))  # noqa: SIM115
    now = timezone.now()
    entries = list(OperationLog.objects.order_by("sequence"))
    delivered, failed = entries[:40], entries[40]
    for index, entry in enumerate(delivered):
        pushed = now - timedelta(hours=20) + timedelta(minutes=30 * index)
        OperationLog.objects.filter(pk=entry.pk).update(
            status=EntryStatus.SUCCEEDED,
            attempt_count=1,
            created_at=pushed - timedelta(seconds=5 + 90 * (index % 7)),
            pushed_at=pushed,
            updated_at=pushed,
        )
    OperationLog.objects.filter(pk=failed.pk).update(
        status=EntryStatus.FAILED,
        attempt_count=1,
        last_error='HTTP 400: {"detail": "student number format not accepted"}',
    )
    SyncLane.objects.filter(pk=DEFAULT_LANE).update(
        last_pushed_sequence=delivered[-1].sequence, last_pushed_at=now - timedelta(minutes=30)
    )
    cache.set(
        HEALTH_CACHE_KEY,
        {"reachable": True, "status_code": 200, "latency_ms": 4.2, "error": "", "checked_at": now.isoformat()},
        timeout=None,
    )


FIRST_NAMES = ["Mia", "Noah", "Lena", "Omar", "Ada", "Yusuf", "Sofia", "Liam", "Hana", "Mateo"]
LAST_NAMES = ["Lee", "Jones", "García", "Haddad"]


def class_list(students: int) -> bytes:
    """A term-start spreadsheet of grade 4, as a school office exports it: a CSV with a header row."""
    rows = ["student_number,first_name,last_name,grade,class"]
    for n in range(students):
        first, last = FIRST_NAMES[n % len(FIRST_NAMES)], LAST_NAMES[n % len(LAST_NAMES)]
        rows.append(f"S{n + 1:03d},{first},{last},4,{'4A' if n % 2 else '4B'}")
    return ("\n".join(rows) + "\n").encode()


def sign_in(page, live_server, user) -> None:
    page.goto(f"{live_server.url}/admin/")
    page.fill("#id_username", user.username)
    page.fill("#id_password", USER_PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("text=Records and sync")


def shoot(page, name: str) -> None:
    page.screenshot(path=str(SCREENSHOT_DIR / f"{name}.png"), full_page=True)


def test_staff_creates_a_school_finds_its_entry_and_opens_the_dashboard(live_server, page, settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    a_day_of_history()
    staff = UserFactory(username="office", is_staff=True, is_superuser=True)

    page.goto(f"{live_server.url}/admin/")
    page.fill("#id_username", staff.username)
    page.fill("#id_password", USER_PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("text=Records and sync")
    shoot(page, "1-admin-home")

    page.goto(f"{live_server.url}/admin/schools/school/add/")
    page.fill("#id_name", "Lakeside Academy")
    page.fill("#id_address", "7 Shore Road, Springfield")
    page.click("input[name=_save]")
    page.wait_for_selector(".messagelist .success")
    assert "Lakeside Academy" in page.inner_text(".messagelist")
    shoot(page, "2-school-saved")

    entry = OperationLog.objects.get(resource="schools", operation="create", payload__name="Lakeside Academy")
    page.goto(f"{live_server.url}/admin/sync/operationlog/?resource__exact=schools")
    page.click(f"text={entry.sequence}")
    page.wait_for_selector(f"text={entry.idempotency_key}")
    assert "Lakeside Academy" in page.inner_text("#content")
    shoot(page, "3-operation-log-entry")

    page.goto(f"{live_server.url}/admin/sync/operationlog/")
    page.click("text=Sync dashboard")
    page.wait_for_selector("h1:has-text('Sync dashboard')")
    dashboard = page.inner_text("#content")
    assert "student number format not accepted" in dashboard
    assert "reachable" in dashboard
    assert page.locator("svg.sync-chart rect.bar").count() == 24
    shoot(page, "4-sync-dashboard")


def test_a_registrar_imports_a_class_list_and_follows_it_to_the_other_system(live_server, page, settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    school = SchoolFactory(name="Lakeside Academy", address="7 Shore Road, Springfield")
    grade = GradeFactory(school=school, level=4, name="Grade 4")
    four_a = SchoolClassFactory(grade=grade, name="4A")
    SchoolClassFactory(grade=grade, name="4B")
    StudentFactory(school_class=four_a, student_number="S002", first_name="Noah", last_name="Jones")
    StudentFactory(school_class=four_a, student_number="S004", first_name="Omar", last_name="Hadad")
    delivered_long_ago = timezone.now() - timedelta(days=1)
    OperationLog.objects.update(status=EntryStatus.SUCCEEDED, attempt_count=1, pushed_at=delivered_long_ago)
    registrar = UserFactory(username="registrar", is_staff=True, permissions=ALL_RECORD_PERMISSIONS)
    SchoolMembership.objects.create(user=registrar, school=school)

    sign_in(page, live_server, registrar)
    page.goto(f"{live_server.url}/admin/schools/school/{school.pk}/change/")
    page.click("text=Import or export records")
    page.select_option("#id_kind", "students")
    page.set_input_files("#id_file", {"name": "grade-4.csv", "mimeType": "text/csv", "buffer": class_list(30)})
    page.click("input[value=Preview]")
    page.wait_for_selector("#preview-counts")
    assert "28 to create, 1 to update, 1 unchanged, 0 with errors" in page.inner_text("#preview-counts")
    assert page.inner_text("#preview-rows tr[data-line='5'] .action-update") == "update"
    assert not RecordImport.objects.exists()
    shoot(page, "5-import-preview")

    page.click("input[value='Import 30 rows']")
    page.wait_for_selector("#import-progress")
    page.wait_for_selector("#import-status-label:has-text('queued')")
    record_import = RecordImport.objects.get()
    imports.import_run(record_import.pk)
    record_import.refresh_from_db()
    # The sync worker has sent the first 12 of the import's 29 entries over the last four minutes.
    now = timezone.now()
    for index, entry in enumerate(
        OperationLog.objects.filter(lane=record_import.lane, sequence__gte=record_import.first_sequence).order_by(
            "sequence"
        )[:12]
    ):
        pushed = now - timedelta(minutes=4) + timedelta(seconds=20 * index)
        OperationLog.objects.filter(pk=entry.pk).update(status=EntryStatus.SUCCEEDED, attempt_count=1, pushed_at=pushed)

    page.wait_for_selector("#import-delivery:has-text('expected by')")
    assert page.eval_on_selector("#import-progress", "bar => bar.value / bar.max") == 1
    assert "30 of 30 rows (100%)" in page.inner_text("#import-rows")
    assert "Done: 28 created, 1 updated, 1 unchanged." in page.inner_text("#import-result")
    delivery = page.inner_text("#import-delivery")
    assert "12 of 29 entries received by the other system; the rest expected by" in delivery
    assert "(about 7 min) at the lane's recent rate of 2.4 a minute." in delivery
    shoot(page, "6-import-progress")
