"""The report pages in a real browser: headless Chromium against a real `riskscore serve`.

Needs the system packages chromium and chromium-driver (CI installs them). Screenshots go
to test-artifacts/browser/ for a person to look at.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from tests.service.test_serve_process import _serving

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    # Missing packages fail the test (never skip it): the reports must be seen rendered.
    assert CHROMIUM.exists() and CHROMEDRIVER.exists(), "apt-get install chromium chromium-driver"
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1200,1800",
        "--hide-scrollbars",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()


def _open(driver: webdriver.Chrome, url: str, screenshot: str) -> list[dict[str, float]]:
    driver.get(url)
    charts = driver.find_elements(By.CSS_SELECTOR, "figure > svg")
    sizes = [chart.size for chart in charts]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    assert driver.save_screenshot(str(ARTIFACTS / screenshot))
    errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
    assert errors == [], errors
    return sizes


def test_reports_render_their_charts_in_a_browser(
    browser: webdriver.Chrome, data_dir: Path, tmp_path: Path
) -> None:
    with _serving(data_dir, extra_env={"RISKSCORE_KAFKA": "off"}) as (base, _):
        decision = _open(browser, f"{base}/reports/decisions/tx-120.html", "decision.png")
        assert browser.title == "Decision report — transaction tx-120"
        assert "Why" in browser.find_element(By.TAG_NAME, "body").text
        summary = _open(
            browser, f"{base}/reports/summary.html?from=2024-01-01&to=2024-01-08", "summary.png"
        )
        assert browser.title.startswith("Period report")

    assert len(decision) == 1
    assert len(summary) == 4
    for size in decision + summary:
        assert size["width"] > 200 and size["height"] > 50
    for name in ("decision.png", "summary.png"):
        shutil.copy(ARTIFACTS / name, tmp_path / name)
        assert (tmp_path / name).stat().st_size > 10_000
