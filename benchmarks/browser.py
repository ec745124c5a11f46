"""The app in a real browser: headless Chromium (Debian ``chromium`` and ``chromium-driver``) driven by
Selenium against the app served on loopback. ``tests/test_browser.py`` uses these steps; run as a
script, it also saves a screenshot of each tab after its example ran:

    python -m benchmarks.browser          # -> benchmarks/results/screenshots/{transcribe,classify,text-to-image}.png

Each step: open the tab, click its first example, press the tab's button, wait until the output
appears (the transcript, the class scores, the generated images), and return what it shows. A
broken upload to the Classify tab must come back as the project's message naming the file.
"""

from __future__ import annotations

import importlib.util
import shutil
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

RESULTS = Path(__file__).parent / "results" / "screenshots"
TABS = {"transcribe": ("Transcribe", "transcribe"), "classify": ("Classify", "classify"),
        "text-to-image": ("Text → Image", "generate")}  # key -> (tab title, button text)
TIMEOUT = 180  # seconds a step may take (models load on a tab's first request)


def browser_missing() -> str | None:
    """Why the browser steps cannot run here, or None."""
    if importlib.util.find_spec("selenium") is None:
        return "selenium is not installed (pip install -e '.[dev]')"
    for tool in ("chromium", "chromedriver"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install -y chromium chromium-driver)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def served_app_in_browser(width: int = 1400, height: int = 1100) -> Iterator:
    """(driver, url): the app served on 127.0.0.1 and a headless Chromium on its page."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    from multimodal import app
    from multimodal.app.common import MAX_FILE_SIZE

    demo = app.build()
    demo.launch(server_name="127.0.0.1", server_port=_free_port(), prevent_thread_lock=True, quiet=True,
                max_file_size=MAX_FILE_SIZE)
    options = Options()
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     f"--window-size={width},{height}"):
        options.add_argument(argument)
    options.binary_location = shutil.which("chromium")
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        driver.get(demo.local_url)
        _wait(driver, lambda: driver.find_elements("css selector", "button[role=tab]"), "the page to load")
        yield driver
    finally:
        driver.quit()
        demo.close()


def _wait(driver, condition: Callable[[], object], what: str, timeout: float = TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = condition()
        except Exception:  # noqa: BLE001 (the page is still changing)
            value = None
        if value:
            return value
        time.sleep(0.25)
    raise TimeoutError(f"waited {timeout:.0f} s for {what}")


def _visible(driver, css: str) -> list:
    return [e for e in driver.find_elements("css selector", css) if e.is_displayed()]


def open_tab(driver, key: str) -> None:
    title = TABS[key][0]
    tab = _wait(driver, lambda: [b for b in driver.find_elements("css selector", "button[role=tab]")
                                 if b.text.strip() == title], f"the {title} tab")[0]
    tab.click()
    _wait(driver, lambda: tab.get_attribute("aria-selected") == "true", f"the {title} tab to open")


def press(driver, key: str) -> None:
    label = TABS[key][1]
    _wait(driver, lambda: [b for b in _visible(driver, "button") if b.text.strip() == label],
          f"the {label} button")[0].click()


def run_example(driver, key: str) -> str:
    """Open the tab, click its first example, press its button; what the output shows."""
    open_tab(driver, key)
    if key != "text-to-image":  # the prompt box starts with an example; the others need one clicked
        _wait(driver, lambda: _visible(driver, "button.gallery-item"), "the examples")[0].click()
        time.sleep(1.0)  # the example's file reaches the input
    press(driver, key)
    if key == "transcribe":
        return _wait(driver, lambda: next((t.get_attribute("value") for t in _visible(driver, "textarea")
                                           if (t.get_attribute("value") or "").strip()), None), "the transcript")
    if key == "classify":
        return _wait(driver, lambda: next((e.text for e in _visible(driver, "[data-testid=label-output-value]")
                                           if e.text.strip()), None), "the class scores")
    images = _wait(driver, lambda: [i for i in _visible(driver, "img") if "gradio_api" in (i.get_attribute("src") or "")
                                    or (i.get_attribute("src") or "").startswith("data:image/png")],
                   "the generated images")
    return f"{len(images)} image(s)"


def bad_upload(driver, path: Path) -> str:
    """Upload ``path`` (a broken image) to the Classify tab and press classify: the error shown."""
    driver.refresh()  # a fresh page: an upload box with no file in it
    _wait(driver, lambda: driver.find_elements("css selector", "button[role=tab]"), "the page to load")
    open_tab(driver, "classify")
    inputs = [i for i in driver.find_elements("css selector", "input[type=file]")
              if i.find_element("xpath", "./ancestor::div[contains(@class, 'tabitem') or @role='tabpanel'][1]")
              .is_displayed()]
    inputs[0].send_keys(str(path))
    time.sleep(1.0)
    press(driver, "classify")
    return _wait(driver, lambda: next((e.text for e in _visible(driver, ".toast-body")
                                       if path.name in e.text), None), "the error message")


def main(argv: list[str] | None = None) -> int:
    reason = browser_missing()
    if reason:
        print(f"cannot run: {reason}")
        return 1
    RESULTS.mkdir(parents=True, exist_ok=True)
    with served_app_in_browser() as driver:
        for key in TABS:
            shown = run_example(driver, key)
            time.sleep(0.5)
            driver.save_screenshot(str(RESULTS / f"{key}.png"))
            print(f"{key}: {' '.join(shown.split())[:100]}  -> {RESULTS / f'{key}.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
