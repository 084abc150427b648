"""report.html in a real browser (headless Chromium): the target cards, sortable and filterable tables,
plots that load, no horizontal scrolling at 1280 px or at phone width, and no console or script errors.

Needs Debian's ``chromium`` and ``chromium-driver`` (CI installs them); skipped without them. Screenshots
of both widths go to $HARNESS_SCREENSHOTS when set, else to the test's tmp_path.
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("selenium")
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select  # noqa: E402

EXAMPLE = Path(__file__).resolve().parent.parent / "reports" / "example"
SIZES = [(1280, 800), (390, 844)]


@pytest.fixture(scope="module")
def driver():
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not chromedriver:
        pytest.skip("needs headless Chromium: install the Debian packages chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,800"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
    yield d
    d.quit()


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    from harness.report.build import build_report

    run = tmp_path_factory.mktemp("run") / "example"
    shutil.copytree(EXAMPLE, run, ignore=shutil.ignore_patterns("farm.lock"))
    build_report(run)
    return run


def viewport(driver, width: int, height: int) -> None:
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600})


def problems(driver) -> list[str]:
    """SEVERE console messages and errors the page's own handler caught since the last call."""
    logs = [f"console: {m['message']}" for m in driver.get_log("browser") if m["level"] == "SEVERE"]
    return logs + [f"script: {x}" for x in driver.execute_script("return window.__errors || ['no error handler']")]


def number(text: str) -> float:
    m = re.match(r"[-+]?(\d[\d,]*\.?\d*|\.\d+)(e[-+]?\d+)?", text.strip(), re.IGNORECASE)
    assert m, f"not a number: {text!r}"
    return float(m.group(0).replace(",", ""))


def column(table, index: int) -> list[str]:
    """The texts of column ``index`` in the table's visible rows, top to bottom."""
    return table.parent.execute_script(
        "return Array.from(arguments[0].tBodies[0].rows).filter(r => !r.hidden)"
        ".map(r => r.cells[arguments[1]].textContent)", table, index)


def headers(table) -> list[str]:
    return [th.text.replace("\n", "").strip() for th in table.find_elements(By.CSS_SELECTOR, "thead th")]


def click_header(driver, th) -> None:
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", th)
    th.find_element(By.TAG_NAME, "button").click()


def check_sorts(driver, table, index: int) -> None:
    th = table.find_elements(By.CSS_SELECTOR, "thead th")[index]
    click_header(driver, th)
    values = [number(t) for t in column(table, index) if t.strip()]
    assert len(values) > 1 and values == sorted(values), (headers(table)[index], values)
    assert th.get_attribute("aria-sort") == "ascending"
    click_header(driver, th)
    values = [number(t) for t in column(table, index) if t.strip()]
    assert values == sorted(values, reverse=True), (headers(table)[index], values)
    assert th.get_attribute("aria-sort") == "descending"


def test_report_in_browser(driver, report, tmp_path):
    shots = Path(os.environ.get("HARNESS_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    configs = pd.read_csv(report / "configs.csv")
    viewport(driver, *SIZES[0])
    driver.get((report / "report.html").as_uri())
    assert driver.execute_script("return document.readyState") == "complete"
    assert problems(driver) == []
    assert driver.find_element(By.CSS_SELECTOR, "meta[name=viewport]")

    # one card per target, each with its recommendation or "none"
    cards = driver.find_elements(By.CSS_SELECTOR, ".cards .card")
    assert sorted(c.get_attribute("data-target") for c in cards) == sorted(configs.target.unique())
    labels = {f"{r.model} {r.recipe} {r.depth}" for r in configs.itertuples()}
    for card in cards:
        rec = card.find_element(By.CSS_SELECTOR, ".rec").text
        assert rec.startswith("Recommended: "), rec
        assert rec.removeprefix("Recommended: ").split(" \u2691")[0].strip() in labels | {"none"}, rec
        if "none" not in card.get_attribute("class"):
            assert len(card.find_elements(By.CSS_SELECTOR, ".bar .fill")) == 3  # flash; RAM static and peak

    # every table sorts by a numeric column, both ways; the configs table by latency_ms
    tables = driver.find_elements(By.CSS_SELECTOR, ".table-block table")
    assert len(tables) >= 2
    conf = driver.find_element(By.CSS_SELECTOR, "#table-configs table")
    assert len(column(conf, 0)) == len(configs)
    check_sorts(driver, conf, headers(conf).index("latency_ms"))
    check_sorts(driver, conf, headers(conf).index("exact_accuracy"))  # "95.8% [79.8, 99.3]" sorts as 95.8
    for table in tables:
        numeric = [i for i, th in enumerate(table.find_elements(By.CSS_SELECTOR, "thead th"))
                   if "num" in th.get_attribute("class")]
        assert numeric, headers(table)
        check_sorts(driver, table, numeric[-1])

    # a filter drop-down keeps only the rows with the value picked
    block = driver.find_element(By.ID, "table-configs")
    element = block.find_element(By.CSS_SELECTOR, "select[data-col='0']")
    select = Select(element)
    model = sorted(configs.model.unique())[-1]
    assert [o.text for o in select.options] == ["all"] + sorted(configs.model.unique())
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    select.select_by_visible_text(model)
    assert column(conf, 0) == [model] * int((configs.model == model).sum())
    assert block.find_element(By.TAG_NAME, "output").text == f"{(configs.model == model).sum()} of {len(configs)} rows"
    select.select_by_visible_text("all")
    assert len(column(conf, 0)) == len(configs)

    # the table scrolls in its own box, under a header that stays put
    box = block.find_element(By.CSS_SELECTOR, ".scroll")
    driver.execute_script("arguments[0].style.maxHeight = '200px'; arguments[0].scrollTop = 150", box)
    box_top, th_top, scrolled = driver.execute_script(
        "var b = arguments[0]; return [b.getBoundingClientRect().top,"
        " b.querySelector('th').getBoundingClientRect().top, b.scrollTop]", box)
    assert scrolled > 0 and abs(th_top - box_top) <= 2, (box_top, th_top, scrolled)
    driver.execute_script("arguments[0].style.maxHeight = ''; arguments[0].scrollTop = 0", box)

    # the plots load
    imgs = driver.find_elements(By.TAG_NAME, "img")
    assert imgs
    for img in imgs:
        assert driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img) > 0

    # no horizontal scrolling at either width; screenshots of both
    driver.execute_script("window.scrollTo(0, 0)")
    for w, h in SIZES:
        viewport(driver, w, h)
        driver.execute_script("window.scrollTo(0, 0)")
        inner, scroll = driver.execute_script(
            "return [window.innerWidth, document.documentElement.scrollWidth]")
        assert inner == w and scroll <= inner, f"at {w}x{h}: page {scroll} px wide in a {inner} px window"
        assert driver.save_screenshot(str(shots / f"report-{w}x{h}.png"))
    assert problems(driver) == []


def test_marked_rows_and_flagged_cards(driver, tmp_path):
    """What the example run lacks: rows that keep cell accuracy but lose puzzle-exact are highlighted, and a
    flagged recommendation and flagged configurations are marked on their card; text is escaped."""
    from harness.report.build import Doc
    from harness.report.html import to_html

    doc = Doc()
    doc.h(1, "Synthetic <report> & co")
    doc.cards([{"target": "board-a", "recommended": "m int4 T1", "reasons": ["<b>not bold</b>"], "confidence": 0.95,
                "runners_up": [{"config": "m int8 T1", "accuracy": "90.0% [70.0, 97.0]", "latency_ms": 3.0,
                                "tied": True}],
                "pareto": [], "flagged": [{"config": "m int4 T1", "text": "cell 99.0% vs fp32 99.5%"}],
                "not_fitting": [{"config": "big", "why": "does not fit"}], "accuracy": "80.0% [60.0, 90.0]",
                "cell": "99.0% [98.0, 99.5]", "puzzles": 10, "latency_ms": 2.5, "latency_basis": "measured",
                "flash": {"used": 900, "limit": 1000}, "ram": {"used": 1200, "limit": 1000}, "ram_peak": 300,
                "flagged_recommended": True}])
    doc.table(pd.DataFrame({"model": ["m", "m"], "recipe": ["int4", "int8"], "n": [1234, 2]}), "configs",
              ("model",), [True, False])
    page = tmp_path / "synthetic.html"
    page.write_text(to_html(doc, "synthetic"))
    viewport(driver, 1280, 800)
    driver.get(page.as_uri())
    assert problems(driver) == []
    assert driver.find_element(By.TAG_NAME, "h1").text == "Synthetic <report> & co"
    card = driver.find_element(By.CSS_SELECTOR, ".card")
    assert "flagged" in card.get_attribute("class")
    assert "keeps cell accuracy" in card.find_element(By.CSS_SELECTOR, ".rec .badge").text
    assert card.find_element(By.CSS_SELECTOR, ".reasons li").text == "<b>not bold</b>"
    assert "m int4 T1" in card.find_element(By.CSS_SELECTOR, ".flagged-list").text
    assert card.find_element(By.CSS_SELECTOR, ".runners-up .badge.tied").text == "tied"
    assert card.find_elements(By.CSS_SELECTOR, ".bar.over")  # static RAM over the limit
    rows = driver.find_elements(By.CSS_SELECTOR, "#table-configs tbody tr")
    assert [("marked" in (r.get_attribute("class") or "")) for r in rows] == [True, False]
    assert "1 of 2" in driver.find_element(By.CSS_SELECTOR, "#table-configs .legend").text
    table = driver.find_element(By.CSS_SELECTOR, "#table-configs table")
    check_sorts(driver, table, 2)  # "1,234" sorts as 1234
