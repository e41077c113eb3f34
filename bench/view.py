"""How fast a `prm view` page is in a browser: 1,000 and 10,000 traces, side by side with all
10,000 traces drawn at once as static HTML (what a page without paging would be).

    python bench/view.py                  # ~2 minutes
    python bench/view.py --repeats 1
    python bench/view.py --quick          # 1 repeat, 1,000 and 2,000 traces

The traces are real GSM8K train solutions (all steps good) and a copy of each with one
calculator result changed (gold labels: that step and later ones bad), with the fields a
labelled and scored file has filled in with values of realistic size: Monte Carlo rollouts
(8 sampled answers per step), a sympy verdict with claim and evidence, a PRM score. The values
are drawn at random (the page's speed depends on the sizes, not on what the values are).

Each page is opened in headless Chromium (Debian's package, through Selenium and
/usr/bin/chromedriver) in a fresh tab, `--repeats` times, arms alternating so that load
from other processes falls on all alike:
- load: from navigation start until the page is ready (the paged pages set
  `window.prmLoadMs` once the list is drawn; the static page: the load event's end);
- filter: choosing "has a refuted step" (the list recomputed over all traces and redrawn);
- open: opening the first trace of the list.
Also: the size of each page and the time `prm.view_html.page_html` takes to write it.
Results: bench/results/view.json.
"""

from __future__ import annotations

import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project root, for bench._harness
from bench._harness import ROOT, machine, parser, save_results  # noqa: E402

DATA = ROOT.parent / "shared" / "data"

from prm.formats.gsm8k import inject_calculator_error, read_gsm8k  # noqa: E402
from prm.records import Rollouts, Verdict  # noqa: E402
from prm.view_html import page_html, show  # noqa: E402


def make_traces(count: int, seed: int = 0):
    rng = random.Random(seed)
    traces = []
    for trace in read_gsm8k(DATA / "gsm8k" / "train.jsonl"):
        traces.append(trace)
        wrong = inject_calculator_error(trace, rng)
        if wrong is not None:
            traces.append(wrong)
        if len(traces) >= count:
            break
    for trace in traces[:count]:
        gold = trace.meta.get("gold_labels") or [1] * len(trace.steps)
        for step, label in zip(trace.steps, gold):
            good = label != 0
            correct = rng.randint(3, 8) if good else rng.randint(0, 3)
            answers = [trace.reference_answer if i < correct else str(rng.randint(1, 999)) for i in range(8)]
            step.rollouts = Rollouts(correct=correct, total=8, answers=answers, tokens=8 * 60, seconds=1.5)
            step.hard_label, step.soft_label, step.label_source = int(correct > 0), correct / 8, "monte-carlo"
            status = "verified" if good or rng.random() < 0.3 else "refuted"
            step.verdicts = [Verdict("sympy", status, claim=step.text[-40:], evidence="computed 42, stated 41"
                                     if status == "refuted" else "= 42", backend="sympy 1.14.0", seconds=0.002)]
            step.score = min(1.0, max(0.0, rng.gauss(0.8 if good else 0.3, 0.15)))
    return traces[:count]


def chromium(profile: str):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1500,950", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.set_page_load_timeout(900)
    driver.command_executor._client_config.timeout = 900  # selenium's own HTTP timeout (120 s) is too short for 50 MB
    return driver


FILTER = """
const select = document.getElementById('prm-refuted'); const t0 = performance.now();
select.value = 'yes'; select.dispatchEvent(new Event('change'));
return [performance.now() - t0, document.getElementById('prm-count').textContent];"""
OPEN = """
const t0 = performance.now(); document.querySelector('.prm-row').click();
return [performance.now() - t0, document.querySelectorAll('#prm-detail .prm-step').length];"""


def measure(driver, page: Path, paged: bool) -> dict:
    driver.get("about:blank")
    driver.get(page.as_uri())
    if paged:
        deadline = time.time() + 900
        while driver.execute_script("return window.prmLoadMs") is None and time.time() < deadline:
            time.sleep(0.05)
        load = driver.execute_script("return window.prmLoadMs")
        filter_ms, count = driver.execute_script(FILTER)
        open_ms, steps = driver.execute_script(OPEN)
        return {"load_ms": load, "filter_ms": filter_ms, "open_ms": open_ms, "after_filter": count, "steps": steps}
    load = driver.execute_script("const t = performance.getEntriesByType('navigation')[0]; return t.loadEventEnd;")
    return {"load_ms": load}


def write_pages(traces, small: int, folder: Path) -> tuple[dict, dict]:
    """The three pages ({name: path}) and what writing each took ({name: seconds, MB, ...})."""
    pages, built = {}, {}
    for name, subset, paged in ((f"paged, {small:,} traces", traces[:small], True),
                                (f"paged, {len(traces):,} traces", traces, True),
                                (f"static, {len(traces):,} traces", traces, False)):
        started = time.perf_counter()
        html = page_html(subset, title=name) if paged else (
            "<!DOCTYPE html><html><head><meta charset='utf-8'></head><body>"
            + show(subset, limit=len(subset))._repr_html_() + "</body></html>")
        built[name] = {"seconds": time.perf_counter() - started, "megabytes": len(html.encode()) / 1e6,
                       "traces": len(subset), "paged": paged}
        pages[name] = folder / f"{len(pages)}.html"
        pages[name].write_text(html, encoding="utf-8")
    return pages, built


def browse(pages: dict, built: dict, repeats: int) -> dict:
    """Every page opened `repeats` times in headless Chromium, arms alternating: {name: [runs]}."""
    driver = chromium(tempfile.mkdtemp(prefix="bench-view-profile-"))
    runs = {name: [] for name in pages}
    try:
        for _ in range(repeats):
            for name, page in pages.items():
                runs[name].append(measure(driver, page, built[name]["paged"]))
    finally:
        driver.quit()
    return runs


def main() -> int:
    args = parser(__doc__, "view", quick="1 repeat, 1,000 and 2,000 traces")
    args.add_argument("--repeats", type=int, default=3)
    args.add_argument("--traces", type=int, default=10_000, help="traces of the large pages")
    args = args.parse_args()  # --seed: of the drawn rollouts, verdicts and scores
    if args.quick:
        args.repeats, args.traces = 1, min(args.traces, 2000)
    machine_record = machine()
    traces = make_traces(args.traces, args.seed)
    pages, built = write_pages(traces, 1000, Path(tempfile.mkdtemp(prefix="bench-view-")))
    runs = browse(pages, built, args.repeats)
    result = {"arms": {}}
    for name in pages:
        arm = dict(built[name])
        for key in ("load_ms", "filter_ms", "open_ms"):
            values = [r[key] for r in runs[name] if key in r]
            if values:
                arm[key] = statistics.median(values)
                arm[key + "_runs"] = values
        arm["checks"] = {k: runs[name][0][k] for k in ("after_filter", "steps") if k in runs[name][0]}
        result["arms"][name] = arm
    small, large, static = result["arms"].values()
    result["ratios"] = {f"load {len(traces):,} / 1,000 (paged)": large["load_ms"] / small["load_ms"],
                        f"load static / paged ({len(traces):,})": static["load_ms"] / large["load_ms"]}
    print(f"{'page':<24}{'MB':>7}{'write s':>9}{'load ms':>10}{'filter ms':>11}{'open ms':>9}")
    for name, arm in result["arms"].items():
        print(f"{name:<24}{arm['megabytes']:>7.1f}{arm['seconds']:>9.2f}{arm['load_ms']:>10.0f}"
              f"{arm.get('filter_ms', float('nan')):>11.1f}{arm.get('open_ms', float('nan')):>9.1f}")
    for name, value in result["ratios"].items():
        print(f"{name}: {value:.2f}")
    save_results(args.results, result, machine_record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
