"""The app in a real browser (headless Chromium through Selenium, ``benchmarks.browser``): the page
loads, every tab's example runs and its output appears, and a broken upload shows the project's
message naming the file. Skips, saying why, where Chromium or its driver is not installed (`make
test` installs both as root)."""

from __future__ import annotations

import re

import pytest

from benchmarks import browser

pytestmark = pytest.mark.skipif(browser.browser_missing() is not None, reason=str(browser.browser_missing()))


@pytest.fixture(scope="module")
def driver():
    with browser.served_app_in_browser() as d:
        yield d


def test_every_tab_runs_its_example(driver):
    assert re.search(r"555.?219.?8604", browser.run_example(driver, "transcribe"))
    assert "T-shirt/top" in browser.run_example(driver, "classify")  # the first example is a T-shirt
    assert browser.run_example(driver, "text-to-image") == "4 image(s)"


def test_a_broken_upload_shows_the_projects_message(driver, tmp_path):
    broken = tmp_path / "holiday.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    message = browser.bad_upload(driver, broken)
    assert "holiday.png: expected a readable image" in message and "/tmp" not in message
