"""The report pages in a real browser: headless Chromium against a real `riskscore serve`.

Needs the system packages chromium and chromium-driver (CI installs them). Full-page
screenshots go to test-artifacts/browser/ for a person to look at; `make screenshots`
copies them to docs/ for the README.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from service.settings import AUDIT_FILE
from tests.reports.test_challenger_report import shadow_rows
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
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()


def _open(driver: webdriver.Chrome, url: str, screenshot: str) -> list[dict[str, float]]:
    driver.set_window_size(1200, 1800)
    driver.get(url)
    charts = driver.find_elements(By.CSS_SELECTOR, "figure > svg")
    sizes = [chart.size for chart in charts]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    # The whole page in one picture: the window as tall as the document.
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1200, min(int(height) + 40, 16_000))
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
    assert len(summary) == 5
    for size in decision + summary:
        assert size["width"] > 200 and size["height"] > 50
    for name in ("decision.png", "summary.png"):
        shutil.copy(ARTIFACTS / name, tmp_path / name)
        assert (tmp_path / name).stat().st_size > 10_000


# Box of every element matching a selector inside the waterfall, in CSS pixels.
_BOXES = """
const svg = document.querySelector('figure > svg');
return Array.from(svg.querySelectorAll(arguments[0])).map(e => {
  const r = e.getBoundingClientRect();
  return {id: e.id, left: r.left, right: r.right, top: r.top, bottom: r.bottom};
});
"""
_PX = 1.0  # anti-aliasing and rounding of the drawn paths


def _boxes(driver: webdriver.Chrome, selector: str) -> list[dict[str, Any]]:
    boxes: list[dict[str, Any]] = driver.execute_script(_BOXES, selector)
    return boxes


def _centre(box: dict[str, Any]) -> float:
    return float(box["left"] + box["right"]) / 2


def _overlap(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return (
        min(a["right"], b["right"]) - max(a["left"], b["left"]) > _PX
        and min(a["bottom"], b["bottom"]) - max(a["top"], b["top"]) > _PX
    )


def test_the_waterfall_chains_from_base_to_score_and_its_labels_do_not_overlap(
    browser: webdriver.Chrome, data_dir: Path
) -> None:
    with _serving(data_dir, extra_env={"RISKSCORE_KAFKA": "off"}) as (base, _):
        for tx in ("tx-120", "tx-5", "tx-700"):
            browser.get(f"{base}/reports/decisions/{tx}.html")
            (start,) = _boxes(browser, "#wf-base")
            (end,) = _boxes(browser, "#wf-score")
            steps = _boxes(browser, "[id^='wf-step-']")
            texts = _boxes(browser, "g[id^='text_']")
            axes = _boxes(browser, "#patch_2")  # the axes' background: the plotted area

            assert len(steps) == 11  # the ten largest and the rest
            at = _centre(start)
            for step in sorted(steps, key=lambda s: int(s["id"].split("-")[2])):
                up = step["id"].endswith("-up")
                assert abs((step["left"] if up else step["right"]) - at) <= _PX, (tx, step)
                at = step["right"] if up else step["left"]
            assert abs(at - _centre(end)) <= _PX, tx
            # The axis spans the steps: the chain fills most of the plotted width.
            spread = max(s["right"] for s in steps) - min(s["left"] for s in steps)
            assert spread > 0.75 * (axes[0]["right"] - axes[0]["left"]), tx
            # Labels, values, ticks and title: no two text boxes intersect.
            assert len(texts) > 20
            clashes = [
                (a["id"], b["id"])
                for i, a in enumerate(texts)
                for b in texts[i + 1 :]
                if _overlap(a, b)
            ]
            assert clashes == [], (tx, clashes)


def test_the_period_report_shows_trends_and_leads_to_decisions(
    browser: webdriver.Chrome, data_dir: Path
) -> None:
    with _serving(data_dir, extra_env={"RISKSCORE_KAFKA": "off"}) as (base, _):
        browser.get(f"{base}/reports/summary.html?from=2024-01-01&to=2024-01-08")
        trend = browser.find_elements(By.CSS_SELECTOR, "figure > svg")[0]
        assert "Per day" in trend.find_element(By.TAG_NAME, "title").get_attribute("textContent")
        assert trend.size["height"] > 300
        rows = browser.find_elements(By.XPATH, "//h2[.='Over time']/following::table[1]/tbody/tr")
        assert [r.find_element(By.TAG_NAME, "td").text for r in rows][:2] == [
            "2024-01-01",
            "2024-01-02",
        ]
        # A day's declines, then one of them, then its decision page.
        declines = [
            link
            for row in rows
            for link in row.find_elements(By.CSS_SELECTOR, "a[href*='action=decline']")
            if link.text != "0"
        ]
        shown = int(declines[0].text)
        declines[0].click()
        assert browser.title == "Decisions"
        listed = browser.find_elements(By.CSS_SELECTOR, "a[href^='decisions/']")
        assert len(listed) == shown
        transaction = listed[0].text
        listed[0].click()
        assert browser.title == f"Decision report — transaction {transaction}"
        assert "DECLINE" in browser.find_element(By.TAG_NAME, "body").text


def test_the_challenger_report_renders_and_leads_to_decisions(
    browser: webdriver.Chrome, data_dir: Path
) -> None:
    shadow_rows(data_dir / AUDIT_FILE)
    with _serving(data_dir, extra_env={"RISKSCORE_KAFKA": "off"}) as (base, _):
        url = f"{base}/reports/challenger.html?from=2024-01-02&to=2024-01-05"
        charts = _open(browser, url, "challenger.png")
        assert browser.title.startswith("Challenger report")
        # The two waterfalls of the largest disagreement, side by side in the page's flow.
        assert len(charts) == 2
        for size in charts:
            assert size["width"] > 200 and size["height"] > 50
        largest = browser.find_elements(By.CSS_SELECTOR, "h3 > a[href^='decisions/']")[0]
        transaction = largest.text
        largest.click()
        assert browser.title == f"Decision report — transaction {transaction}"
