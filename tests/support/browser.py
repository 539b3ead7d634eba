"""Headless Chromium from Debian's packages, driven through chromedriver by Selenium.

Why Selenium and not the DevTools protocol by hand: the protocol needs a WebSocket client
(not in the standard library) and our own waiting and element code; Selenium is one test
dependency, speaks to Debian's ``chromium-driver`` directly (its path given, so Selenium
Manager never downloads a driver), and its waits poll the live page. scripts/bootstrap
installs ``chromium`` and ``chromium-driver`` when missing.

Screenshots go to ``tests/artifacts/`` (ignored by git); each test prints the path.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.support.ui import WebDriverWait

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
WINDOW = (1000, 920)  # the fixed size of every screenshot (docs/web-page.png too)
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@contextmanager
def chromium() -> Iterator[webdriver.Chrome]:
    """A headless Chromium, closed afterwards. No proxy (tests talk to 127.0.0.1), no
    sandbox (test machines run as root, where Chromium's sandbox refuses to start)."""
    assert os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK), (
        "headless Chromium is missing: run scripts/bootstrap (installs chromium and "
        "chromium-driver from Debian's packages)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--no-proxy-server", "--hide-scrollbars",
                     "--force-device-scale-factor=1", f"--window-size={WINDOW[0]},{WINDOW[1]}"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=webdriver.ChromeService(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver: webdriver.Chrome, condition: Callable[[webdriver.Chrome], object],
             timeout_s: float, what: str) -> object:
    """Poll the live page until ``condition`` is truthy (an element redrawn meanwhile
    counts as not yet); fail naming ``what``."""
    def check(d: webdriver.Chrome) -> object:
        try:
            return condition(d)
        except StaleElementReferenceException:
            return False
    try:
        return WebDriverWait(driver, timeout_s, poll_frequency=0.2).until(check)
    except WebDriverException as err:
        raise AssertionError(f"timed out after {timeout_s} s waiting for {what}") from err


def screenshot(driver: webdriver.Chrome, name: str) -> Path:
    """Save the page as ``tests/artifacts/<name>.png`` and print where."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    print(f"screenshot of the page: {path}")
    return path
