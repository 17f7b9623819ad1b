"""The viewer's page in a real browser: headless Chromium (Debian's package) driven by Playwright.

Skipped where Chromium or Playwright is missing, unless NGD_REQUIRE_BROWSER=1 (set by .ci/run),
where a missing browser fails. NGD_VIEWER_SCREENSHOT=path also saves the screenshot there
(docs/viewer.png is made that way, with a trained demo student in NGD_VIEWER_STUDENT)."""
import os
import shutil
from pathlib import Path

import pytest

from nerfgan_distill import student, teacher
from nerfgan_distill.viewer import FrameRenderer, create_app, running

REQUIRED = os.environ.get("NGD_REQUIRE_BROWSER") == "1"
# Flags for a closed network, as root, with no GPU (see the environment notes in .ci/run).
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _chromium() -> str:
    path = os.environ.get("NGD_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if REQUIRED:
            pytest.fail("NGD_REQUIRE_BROWSER=1 but no Chromium found (apt-get install chromium, or set NGD_CHROMIUM)")
        pytest.skip("no Chromium on this machine (apt-get install chromium)")
    return path


def _sync_playwright():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if REQUIRED:
            pytest.fail("NGD_REQUIRE_BROWSER=1 but playwright is not installed (pip install '.[test]')")
        pytest.skip("playwright is not installed")
    return sync_playwright


@pytest.fixture(scope="module")
def viewer_url():
    G = teacher.bundled()
    student_path = os.environ.get("NGD_VIEWER_STUDENT")
    S = student.load(student_path) if student_path else student.build("tiny", teacher=G, seed=1).eval()
    with running(create_app(FrameRenderer(G, S))) as url:
        yield url


def _wait_for_frame(page, after_src=None):
    page.wait_for_function(
        """(old) => { const img = document.getElementById('teacher-img');
                      return img.src.startsWith('data:image/png') && img.src !== old
                             && document.getElementById('student-speed').textContent.includes('img/s'); }""",
        arg=after_src or "", timeout=30_000)


def test_drag_orbits_the_view_and_speeds_show(viewer_url, tmp_path):
    chromium, sync_playwright = _chromium(), _sync_playwright()
    errors = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 760})
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(viewer_url)
            _wait_for_frame(page)
            assert page.locator("#student-panel").is_visible() and page.locator("#depth-panel").is_visible()
            first_teacher = page.locator("#teacher-img").get_attribute("src")
            first_student = page.locator("#student-img").get_attribute("src")
            assert page.locator("#yaw-value").text_content() == "0.00"
            for speed in ("#teacher-speed", "#student-speed"):
                assert "ms/frame" in page.locator(speed).text_content()

            box = page.locator("#teacher-img").bounding_box()
            x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
            page.mouse.move(x, y)
            page.mouse.down()
            page.mouse.move(x + 60, y - 15, steps=8)
            page.mouse.up()
            _wait_for_frame(page, first_teacher)
            page.wait_for_timeout(500)  # the drag's last view, after the stale ones were skipped
            assert float(page.locator("#yaw-value").text_content()) == pytest.approx(-60 * 0.008, abs=0.02)
            assert float(page.locator("#pitch-value").text_content()) == pytest.approx(15 * 0.008, abs=0.02)
            assert page.locator("#student-img").get_attribute("src") != first_student
            assert "x the teacher" in page.locator("#speedup").text_content()

            before = page.locator("#teacher-img").get_attribute("src")
            page.fill("#seed", "7")
            page.dispatch_event("#seed", "input")
            _wait_for_frame(page, before)

            shot = tmp_path / "viewer.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            if os.environ.get("NGD_VIEWER_SCREENSHOT"):
                Path(os.environ["NGD_VIEWER_SCREENSHOT"]).write_bytes(shot.read_bytes())
        finally:
            browser.close()
    assert errors == [], errors
