"""The report in a real browser: headless Debian Chromium, networking off, the file opened from disk.

Checks: no console error, no request but file:/data:, every chart drawn (an svg or canvas per chart),
one coloured span per character of the excerpt in every text view, the corpus's <script> shown and
not run, the unit picker recolouring the text with the right colours, the guesses grid paging.
A screenshot goes to tests/artifacts/. Without chromium/chromedriver the test is skipped, except
under CI=true, where that is a failure.
"""
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from test_report import EVIL, FakeProbe, line_position, quote_labels

from neuroscope.checkpoint import Checkpoint, TextSpan
from neuroscope.model import CharRNN, ModelConfig
from neuroscope.report import build_report
from neuroscope.report._page import BLUE, GREEN, WHITE
from neuroscope.text import Vocab

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
N = 1500


def need_browser():
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not (os.path.exists(p) or shutil.which(os.path.basename(p)))]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package (pip install -e '.[test]')")
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI needs {', '.join(missing)} for the browser test")
        pytest.skip(f"needs {', '.join(missing)}")


@pytest.fixture(scope="module")
def browser():
    need_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")
    profile = tempfile.mkdtemp(prefix="ns-chromium-")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND",
                f"--user-data-dir={profile}", "--window-size=1400,1000"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER if os.path.exists(CHROMEDRIVER)
                                              else shutil.which("chromedriver")), options=opts)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    torch.manual_seed(0)
    text = (EVIL + "A line with 'single' quotes and an emoji \U0001F600 here.\n") * 20
    vocab = Vocab.from_text(text)
    model = CharRNN(ModelConfig(len(vocab), "lstm", hidden_size=16, num_layers=2)).eval()
    train = {"text": "evil.txt", "test_loss_nats": 2.0, "samples": {"100": "x <script>window.__pwned=2</script>"},
             "curve": [{"step": s, "train_loss": 3 / s ** 0.2, "val_loss": 3.1 / s ** 0.2} for s in (100, 200, 300)]}
    ckpt = Checkpoint(model, vocab, train=train, path="tiny.pt")
    features = {"in_quote": quote_labels(text), "line_position": line_position(text)}
    report = build_report(ckpt, TextSpan(text, 0, "evil.txt", None), FakeProbe(model, text, features), features,
                          max_chars=N)
    path = tmp_path_factory.mktemp("browser") / "report.html"
    report.save(path)
    return path, report, text[:N]


def expected_colour(v: float) -> str:
    """The page's diverging scale (blue -1, white 0, green +1), as the browser reports it."""
    v = max(-1.0, min(1.0, v))
    end = BLUE if v < 0 else GREEN
    return "rgb(" + ", ".join(str(int(np.floor(w + (e - w) * abs(v) + 0.5))) for w, e in zip(WHITE, end)) + ")"


def test_report_renders_in_chromium(browser, page):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait
    path, report, text = page
    browser.get(path.resolve().as_uri())
    WebDriverWait(browser, 60).until(lambda d: d.execute_script("return window.neuroscopeReady === true"))
    n_charts = len(report.charts)
    assert n_charts == len(browser.find_elements(By.CSS_SELECTOR, ".chart")) >= 7
    WebDriverWait(browser, 60).until(lambda d: d.execute_script(
        "return Array.from(document.querySelectorAll('.chart')).every(c => c.querySelector('svg, canvas'))"))

    # One coloured span per character, in every text view (2 unit panels + the predictions view).
    counts = browser.execute_script("""
        return Array.from(document.querySelectorAll('.textview')).map(v => [
            v.querySelectorAll('span.ch').length,
            Array.from(v.querySelectorAll('span.ch')).filter(s => s.style.backgroundColor !== '').length,
            v.textContent]);""")
    assert len(counts) == 3
    n_chars = len(text)                                        # Python characters; the emoji is one
    for spans, coloured, shown in counts:
        assert spans == coloured == n_chars
        assert shown == text                                   # CRLF, tab, <script> and </pre> as text
    assert browser.execute_script("return typeof window.__pwned") == "undefined"

    # The picker recolours the text with the chosen unit's values.
    pick = Select(browser.find_element(By.ID, "pick-p0"))
    second = pick.options[1].get_attribute("value")
    pick.select_by_value(second)
    values = report.data["units"][second]["values"]
    colour = (lambda x: np.tanh(x)) if report.data["units"][second]["tanh"] else (lambda x: x)
    got = browser.execute_script("""
        const s = document.querySelectorAll('.textview[data-panel="p0"] span.ch');
        return [0, 7, 100, 1234].map(k => [s[k].style.backgroundColor, s[k].title]);""")
    for k, (bg, title) in zip([0, 7, 100, 1234], got):
        assert bg == expected_colour(float(colour(values[k])))
        assert title.startswith(f"{second} = ")

    # A click on a ranking row selects that unit in the feature's picker.
    row = browser.find_elements(By.CSS_SELECTOR, "tr.pick[data-panel='p1']")[2]
    row.click()
    assert Select(browser.find_element(By.ID, "pick-p1")).first_selected_option.get_attribute("value") == \
        row.get_attribute("data-unit")

    # The guesses grid shows 400 characters a page, 5 guesses each, and pages forward.
    assert browser.execute_script("return document.querySelectorAll('.grid .pcol').length") == 400
    assert browser.execute_script("return document.querySelectorAll('.grid .pcol div').length") == 400 * 6
    browser.find_element(By.ID, "grid-next").click()
    assert "401" in browser.find_element(By.ID, "grid-where").text

    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []
    requests = [json.loads(e["message"])["message"] for e in browser.get_log("performance")]
    urls = [m["params"]["request"]["url"] for m in requests if m["method"] == "Network.requestWillBeSent"]
    assert path.resolve().as_uri() in urls
    # Chromium's own chrome:// pages aside, nothing but the file itself and data: URLs was asked for.
    assert [u for u in urls if not u.startswith(("file:", "data:", "chrome:", "about:"))] == []

    ARTIFACTS.mkdir(exist_ok=True)
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1400, min(height, 16000))
    shot = ARTIFACTS / "report.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 50_000
