"""`prm view` pages used as a person would: in headless Chromium, filter, open a trace, look.

Needs Debian's `chromium` and `chromium-driver` packages and the `selenium` package
(`make install-test` installs them where it runs as root with apt-get); without them the
browser tests skip, saying what is missing. Selenium is pointed at /usr/bin/chromedriver, so
it never downloads a driver. The page is built from real data: GSM8K model solutions through
`prm convert` and `prm check`, and a ProcessBench-format file of GSM8K solutions with one
calculator result changed.
"""

from __future__ import annotations

import random
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from prm.app.cli import main
from prm.formats import read
from prm.formats.gsm8k import inject_calculator_error, read_gsm8k
from prm.formats.processbench import write_processbench
from prm.view_html import trace_facets, trace_html

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


def browser_missing() -> str | None:
    if not CHROMIUM.exists() or not CHROMEDRIVER.exists():
        return ("no browser: install Debian's chromium and chromium-driver "
                "(`apt-get install -y chromium chromium-driver`, done by `make install-test` as root)")
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (`pip install -e .[test]`)"
    return None


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    missing = browser_missing()
    if missing:
        pytest.skip(missing)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1500,950",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(120)
    yield driver
    driver.quit()


def open_page(driver, url: str) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    WebDriverWait(driver, 60).until(lambda d: d.execute_script("return document.body.dataset.ready === '1'"))


def choose(driver, select_id: str, value: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element(By.ID, select_id)).select_by_value(value)


def shown_count(driver) -> int:
    from selenium.webdriver.common.by import By

    return int(re.match(r"(\d+) of", driver.find_element(By.ID, "prm-count").text).group(1))


def step_view(driver_or_html) -> list[tuple[str, str, str]]:
    """(data-step, classes, badges text) of each drawn step, from the page or from HTML text."""
    from selenium.webdriver.common.by import By

    if isinstance(driver_or_html, str):
        from html.parser import HTMLParser

        class Steps(HTMLParser):
            def __init__(self):
                super().__init__()
                self.steps, self.depth, self.badge = [], 0, False

            def handle_starttag(self, tag, attrs):
                attrs = dict(attrs)
                if "data-step" in attrs:
                    self.steps.append([attrs["data-step"], attrs["class"], ""])
                self.badge = "prm-badge" in (attrs.get("class") or "")

            def handle_data(self, data):
                if self.badge and self.steps:
                    self.steps[-1][2] += data + "|"
                self.badge = False

        parser = Steps()
        parser.feed(driver_or_html)
        return [tuple(s) for s in parser.steps]
    steps = []
    for element in driver_or_html.find_elements(By.CSS_SELECTOR, "#prm-detail .prm-step"):
        badges = "".join(b.get_attribute("textContent") + "|" for b in element.find_elements(By.CSS_SELECTOR, ".prm-badge"))
        steps.append((element.get_attribute("data-step"), element.get_attribute("class"), badges))
    return steps


@pytest.fixture(scope="module")
def gsm8k_page(shared_data, tmp_path_factory):
    """GSM8K model solutions: converted, checked with sympy, written as a page."""
    folder = tmp_path_factory.mktemp("view-gsm8k")
    native, checked, page = folder / "solutions.jsonl", folder / "checked.jsonl", folder / "checked.html"
    assert main(["convert", str(shared_data / "gsm8k" / "example_model_solutions.jsonl"), str(native),
                 "--limit", "150"]) == 0
    assert main(["check", str(native), str(checked), "--checkers", "sympy", "--workers", "1", "--no-progress"]) == 0
    assert main(["view", str(checked), "--out", str(page)]) == 0
    return read(checked), page


@pytest.fixture(scope="module")
def processbench_file(shared_data, tmp_path_factory):
    """A ProcessBench-format file: GSM8K solutions and copies with one calculator result changed."""
    rng = random.Random(3)
    traces = []
    for trace in read_gsm8k(shared_data / "gsm8k" / "train.jsonl", limit=60):
        traces.append(trace)
        wrong = inject_calculator_error(trace, rng)
        if wrong is not None:
            traces.append(wrong)
    path = tmp_path_factory.mktemp("view-processbench") / "gsm8k.json"
    write_processbench(path, traces)
    return path


def test_page_is_self_contained(gsm8k_page):
    _, page = gsm8k_page
    text = page.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text)  # nothing fetched at view time
    assert "<script" in text and "</html>" in text


def test_filter_open_a_trace_and_screenshot_in_chromium(browser, gsm8k_page, tmp_path):
    from selenium.webdriver.common.by import By

    traces, page = gsm8k_page
    open_page(browser, page.as_uri())
    assert shown_count(browser) == len(traces)
    refuted = [t for t in traces if trace_facets(t)["refuted"]]
    assert 0 < len(refuted) < len(traces)
    choose(browser, "prm-refuted", "yes")
    assert shown_count(browser) == len(refuted)
    rows = browser.find_elements(By.CSS_SELECTOR, ".prm-row")
    assert [r.find_element(By.CSS_SELECTOR, ".prm-id").text for r in rows] == [t.id for t in refuted][:len(rows)]
    rows[0].click()
    trace = refuted[0]
    assert browser.find_element(By.CSS_SELECTOR, "#prm-detail .prm-id").text == trace.id
    drawn = step_view(browser)
    assert len(drawn) == len(trace.steps)
    assert any("sympy: refuted" in badges for _, _, badges in drawn)
    evidence = browser.find_element(By.CSS_SELECTOR, "#prm-detail").text
    assert "evidence" in evidence and "computed" in evidence
    # the notebook renderer (Python) draws the same steps as the page's script
    assert drawn == step_view(trace_html(trace))
    shot = tmp_path / "view.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 20_000
    # the text search narrows the list to traces whose text holds the words
    choose(browser, "prm-refuted", "")
    word = trace.problem.split()[3].lower()
    search = browser.find_element(By.ID, "prm-search")
    search.send_keys(word)
    expected = sum(word in "\n".join([t.id, t.problem, *t.step_texts]).lower() for t in traces)
    deadline = time.time() + 10
    while shown_count(browser) != expected and time.time() < deadline:
        time.sleep(0.1)
    assert shown_count(browser) == expected < len(traces)


def test_processbench_file_by_first_error_and_colour_toggle(browser, processbench_file, tmp_path):
    from selenium.webdriver.common.by import By

    page = tmp_path / "pb.html"
    assert main(["view", str(processbench_file), "--out", str(page)]) == 0
    traces = read(processbench_file)
    open_page(browser, page.as_uri())
    assert shown_count(browser) == len(traces)
    at_step_2 = [t for t in traces if t.first_error() == 1]
    assert at_step_2
    choose(browser, "prm-first-error", "1")
    assert shown_count(browser) == len(at_step_2)
    browser.find_elements(By.CSS_SELECTOR, ".prm-row")[0].click()
    marked = browser.find_elements(By.CSS_SELECTOR, "#prm-detail .prm-step.first-error")
    assert [m.get_attribute("data-step") for m in marked] == ["1"]
    assert step_view(browser) == step_view(trace_html(at_step_2[0]))  # as a notebook draws it
    colour = marked[0].value_of_css_property("background-color")
    choose(browser, "prm-colour", "score")  # ProcessBench has no scores: every step turns grey
    assert marked[0].value_of_css_property("background-color") != colour
    choose(browser, "prm-colour", "gold")  # gold labels are the ProcessBench labels: red again
    assert marked[0].value_of_css_property("background-color") == colour


def test_serve_serves_the_page_on_loopback(browser, processbench_file, tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "prm.app.cli", "view", str(processbench_file), "--out", str(tmp_path / "p.html"),
         "--serve", "--port", "0"], stdout=subprocess.PIPE, text=True, cwd=ROOT,
        env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    try:
        url = None
        for line in process.stdout:
            found = re.search(r"serving (http://127\.0\.0\.1:\d+/)", line)
            if found:
                url = found.group(1)
                break
        assert url, "prm view --serve printed no URL"
        open_page(browser, url)
        assert shown_count(browser) == len(read(processbench_file))
    finally:
        process.terminate()
        process.wait(timeout=30)
