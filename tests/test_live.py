"""The live report: the model runs inside the page (neuroscope.report._live, neuroscope/live.js).

In headless Chromium, networking off, the page's float32 forward is checked against neuroscope's
torch numbers on 2,000 characters of War and Peace's test split with wp_lstm2x128 (h and tanh(c)
within 1e-4 of record(), the top-5 guesses equal to torch's, the per-character loss under
interventions equal to char_losses'), then on small GRU and RNN models; the page's text box,
unit picker, interventions and sampling are driven through the page; bad models are refused at
build time. Timings are measured by analyses/live_section.py, not asserted here (docs/live.md).
"""
import base64
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from test_browser import browser, expected_colour  # noqa: F401 (browser: the module's Chromium fixture)

from neuroscope.checkpoint import Checkpoint, TextSpan, choose_text, save_checkpoint
from neuroscope.cli import cli
from neuroscope.errors import UserError
from neuroscope.model import CharRNN, ModelConfig
from neuroscope.record import Intervention, char_losses, record
from neuroscope.report import _live as live_module
from neuroscope.report import build_report
from neuroscope.report._live import LIVE_JS, live_payload, rounded_model
from neuroscope.text import Vocab

pytestmark = pytest.mark.usefixtures("one_thread")       # batch-1 recording, as test_report
N = 2000


def open_page(browser, path):
    from selenium.webdriver.support.ui import WebDriverWait
    browser.get(path.resolve().as_uri())
    WebDriverWait(browser, 60).until(lambda d: d.execute_script(
        "return window.neuroscopeReady === true && !!window.neuroscopeLive"))


def page_run(browser, text, edits=()):
    """neuroscopeLive.run in the page -> (ids, {name: float32 [n, H]}, loss [n-1], top ids [n, 5], top p [n, 5])."""
    r = browser.execute_script("""
        const L = window.neuroscopeLive, r = L.run(arguments[0], arguments[1]), st = {};
        for (const [k, v] of Object.entries(r.states)) st[k] = L.toBase64(v);
        return {ids: r.ids, states: st, loss: L.toBase64(r.loss), top: Array.from(r.top), topP: L.toBase64(r.topP)};""",
                               text, list(edits))
    f32 = lambda b: np.frombuffer(base64.b64decode(b), np.float32)          # noqa: E731
    n = len(r["ids"])
    states = {k: f32(v).reshape(n, -1) for k, v in r["states"].items()}
    return (np.array(r["ids"]), states, f32(r["loss"]), np.array(r["top"]).reshape(n, 5),
            f32(r["topP"]).reshape(n, 5))


def assert_states_match(model, ids, states):
    """Every h within 1e-4, and every c within 1e-4 as shown (tanh(c)), of record()'s float32 values."""
    rec = record(model, ids, states=("h", "c"))
    assert sorted(states) == sorted(rec)
    for name, want in rec.items():
        got = states[name]
        if name.endswith(".c"):
            got, want = np.tanh(got), np.tanh(want)
        assert got.shape == want.shape
        assert np.abs(got - want).max() < 1e-4, name


@pytest.fixture(scope="module")
def wp(wp_small, shared_data, tmp_path_factory):
    """A live report of wp_lstm2x128 on 300 characters, and 2,000 characters of the test split."""
    span = choose_text(wp_small, str(shared_data / "warpeace.txt"), split="test", chars=N)
    path = tmp_path_factory.mktemp("live") / "wp.html"
    build_report(wp_small, span, max_chars=300, live=True).save(path)
    return path, span.text


def test_page_forward_reproduces_record_and_top5_on_2000_chars(browser, wp, wp_small):
    path, text = wp
    open_page(browser, path)
    ids, states, loss, top, top_p = page_run(browser, text)
    model = wp_small.model
    assert ids.tolist() == wp_small.vocab.encode(text).tolist() and len(ids) == N
    assert_states_match(model, ids, states)

    with torch.no_grad():
        probs = torch.softmax(model(torch.as_tensor(ids)[None])[0][0], -1).numpy()     # [N, V]
    want_p, want = torch.as_tensor(probs).topk(5, -1)
    want, want_p = want.numpy(), want_p.numpy()
    differ = top != want
    # A different id at some rank is allowed only where torch's two probabilities tie within 1e-6.
    tie = np.abs(np.take_along_axis(probs, top, 1) - want_p) < 1e-6
    assert not (differ & ~tie).any()
    assert differ.sum() <= 5                      # ties are rare: the guesses are torch's
    assert np.abs(top_p - want_p).max() < 1e-5
    assert np.abs(loss - char_losses(model, ids)).max() < 1e-4


def test_page_interventions_give_char_losses_per_character(browser, wp, wp_small):
    path, text = wp
    open_page(browser, path)
    model, ids = wp_small.model, wp_small.vocab.encode(text)
    clamp = [Intervention("rnn.l1.c", [17], "clamp", 3.0)]
    _, states, loss, _, _ = page_run(browser, text, [{"name": "rnn.l1.c", "units": [17], "op": "clamp", "value": 3.0}])
    want = char_losses(model, ids, clamp)
    assert np.abs(loss - want).max() < 1e-4
    assert np.abs(loss - char_losses(model, ids)).max() > 0.1                # the clamp changed something
    assert (states["rnn.l1.c"][:, 17] == 3.0).all()

    several = [Intervention("rnn.l0.h", [3, 7], "zero"), Intervention("rnn.l1.c", [17, 40], "scale", -1.5),
               Intervention("rnn.l1.h", [5], "clamp", 0.5)]
    _, _, loss, _, _ = page_run(browser, text, [{"name": i.name, "units": list(i.units), "op": i.op, "value": i.value}
                                                for i in several])
    assert np.abs(loss - char_losses(model, ids, several)).max() < 1e-4


@pytest.mark.parametrize("cell", ["gru", "rnn"])
def test_gru_and_rnn_forward_on_the_float16_rounded_model(browser, cell, tmp_path):
    torch.manual_seed(1)
    text = "the cat sat on the mat; the dog did not.\n" * 8
    vocab = Vocab.from_text(text)
    model = CharRNN(ModelConfig(len(vocab), cell, hidden_size=24, num_layers=2)).eval()
    ckpt = Checkpoint(model, vocab, train={}, path="tiny.pt")
    path = tmp_path / "tiny.html"
    report = build_report(ckpt, TextSpan(text, 0, "tiny.txt", None), max_chars=100, live=True)
    report.save(path)
    assert "rounded to float16" in report.html
    open_page(browser, path)
    ids, states, loss, _, _ = page_run(browser, text, [{"name": "rnn.l0.h", "units": [2], "op": "scale", "value": 2.0}])
    half = rounded_model(model)
    want_states = record(half, ids, ("h",), interventions=[Intervention("rnn.l0.h", [2], "scale", 2.0)])
    for name, want in want_states.items():
        assert np.abs(states[name] - want).max() < 1e-4
    assert np.abs(loss - char_losses(half, ids, [Intervention("rnn.l0.h", [2], "scale", 2.0)])).max() < 1e-4


def test_text_box_steps_once_per_typed_character_and_colours_by_unit(browser, wp, wp_small):
    path, text = wp
    open_page(browser, path)
    text = text[:400]
    assert text.count("\n") == text.count("\r\n") > 5
    # The box holds "\n" only (as every text box); ticked, "read line breaks as \r\n" puts the "\r" back.
    assert browser.execute_script("return document.getElementById('live-crlf').checked")
    browser.execute_async_script("neuroscopeLive.ui.type(arguments[0]).then(arguments[1])", text)
    # One more character: one forward step (no re-reading of the text); an edit at 350: from there on.
    steps = browser.execute_script("""
        const L = neuroscopeLive, box = document.getElementById('live-text'), s0 = L.steps();
        box.value += 'x'; box.dispatchEvent(new Event('input'));
        const s1 = L.steps();
        box.value = box.value.slice(0, 350) + 'Q' + box.value.slice(351); box.dispatchEvent(new Event('input'));
        return [s1 - s0, L.steps() - s1, box.value];""")
    box = steps.pop()
    assert box == text.replace("\r", "")[:350] + "Q" + text.replace("\r", "")[351:] + "x"
    typed = box.replace("\n", "\r\n")
    same = next(k for k, (a, b) in enumerate(zip(typed, text + "x")) if a != b)
    assert steps == [1, len(typed) - same]
    browser.execute_async_script("neuroscopeLive.ui.idle().then(arguments[0])")
    browser.execute_script("neuroscopeLive.ui.setUnit('l1.c.17')")
    picks = (0, 5, 200, 350, len(typed) - 1)
    rec = record(wp_small.model, wp_small.vocab.encode(typed), states=("c",))["rnn.l1.c"][:, 17]
    got = browser.execute_script("""
        const s = document.querySelectorAll('#live-units span.ch');
        return [s.length, Array.from(document.querySelectorAll('#live-grid .pch')).map(h => h.title),
                arguments[0].map(k => s[k].style.backgroundColor)];""", picks)
    assert got[0] == len(typed) > 400
    assert got[1] == [f"char {k}" for k in range(len(typed) - 400, len(typed))]    # the grid: the last 400
    assert got[2] == [expected_colour(float(np.tanh(rec[k]))) for k in picks]
    assert browser.execute_script("return document.querySelector('#live-pick').value") == "l1.c.17"


def test_interventions_and_sampling_through_the_page(browser, wp, wp_small):
    from selenium.webdriver.common.by import By
    path, text = wp
    open_page(browser, path)
    text = text[:300]
    ids = wp_small.vocab.encode(text)
    browser.execute_async_script("neuroscopeLive.ui.type(arguments[0]).then(arguments[1])", text)
    browser.execute_async_script("neuroscopeLive.ui.addEdit({units: 'l1.c.17, l0.h.3', op: 'clamp', value: 2})"
                                 ".then(arguments[0])")
    line = browser.find_element(By.ID, "live-loss").text
    edited = char_losses(wp_small.model, ids, [Intervention("rnn.l1.c", [17], "clamp", 2.0),
                                               Intervention("rnn.l0.h", [3], "clamp", 2.0)]).mean()
    assert f"loss on this text: {edited:.4f}" in line
    assert f"without the interventions {char_losses(wp_small.model, ids).mean():.4f}" in line

    # Temperature 0 without the interventions: torch's greedy continuation of the same text.
    browser.execute_script("""
        document.getElementById('live-temp').value = '0'; document.getElementById('live-len').value = '60';
        document.getElementById('live-with').checked = false; document.getElementById('live-sample').click();""")
    sampled = browser.execute_script("return neuroscopeLive.ui.idle().then(() => "
                                     "document.getElementById('live-sampled').textContent)")
    want = wp_small.model.sample(wp_small.vocab, 60, temperature=0, prime=text)[len(text):]
    assert sampled == want
    browser.execute_script("document.getElementById('live-with').checked = true; "
                           "document.getElementById('live-temp').value = '1'; document.getElementById('live-sample').click();")
    other = browser.execute_script("return neuroscopeLive.ui.idle().then(() => "
                                   "document.getElementById('live-sampled').textContent)")
    assert len(other) == 60 and set(other) <= set(wp_small.vocab.chars)


def test_characters_outside_the_vocabulary_read_as_the_cli_reads_them(browser, wp, wp_small):
    path, _ = wp
    open_page(browser, path)
    text = "Espa\u00f1a \u4e2d\u6587 and \U0001F600 here."
    ids, *_ = page_run(browser, text)
    assert ids.tolist() == wp_small.vocab.encode(text).tolist()
    assert wp_small.vocab.count_unknown(text) == 4
    browser.execute_async_script("neuroscopeLive.ui.type(arguments[0]).then(arguments[1])", text)
    status = browser.execute_script("return document.getElementById('live-status').textContent")
    assert status == f'{len(text)} characters; 4 not in the model\'s vocabulary, read as " " (as the command line reads them).'
    assert "as neuroscope's command line reads them" in browser.execute_script(
        "return document.getElementById('live').textContent")
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []
    requests = [json.loads(e["message"])["message"] for e in browser.get_log("performance")]
    urls = [m["params"]["request"]["url"] for m in requests if m["method"] == "Network.requestWillBeSent"]
    assert [u for u in urls if not u.startswith(("file:", "data:", "chrome:", "about:"))] == []


def test_without_live_the_report_is_unchanged_and_small(wp_small, warpeace):
    span = TextSpan(warpeace[:300], 0, "warpeace.txt", None)
    plain = build_report(wp_small, span, max_chars=300).html
    live = build_report(wp_small, span, max_chars=300, live=True)
    assert "neuroscopeLive" not in plain and '<section id="live">' not in plain and '"live"' not in plain
    assert len(plain) < 1_200_000                                   # the Vega bundle is most of it
    added = len(live.html.encode()) - len(plain.encode())
    weights = len(live.data["live"]["weights"])
    assert weights == 4 * np.ceil(2 * 285_780 / 3)                 # 285,780 weights, 2 bytes each, base64
    assert weights < added < weights + len(LIVE_JS) + 6_000 and added <= 1_000_000
    assert "neuroscopeLive" not in live.view("units").html and '"weights"' not in live.view("units").html


def test_the_page_carries_the_weights_as_float16_bytes(wp_small):
    payload = live_payload(wp_small)
    raw = np.frombuffer(base64.b64decode(payload["weights"]), "<f2")
    sd = wp_small.model.state_dict()
    for t in payload["tensors"]:
        w = sd[t["name"]]
        assert t["shape"] == list(w.shape)
        got = raw[t["offset"]:t["offset"] + w.numel()].astype(np.float32).reshape(w.shape)
        assert np.array_equal(got, w.numpy())                      # the reference checkpoint is float16
    assert payload["rounded"] == 0.0 and payload["fallback"] == wp_small.vocab.fallback_id


def tiny_ckpt(cell="lstm", **kwargs):
    torch.manual_seed(0)
    vocab = Vocab.from_text("abc def\n")
    return Checkpoint(CharRNN(ModelConfig(len(vocab), cell, hidden_size=8, num_layers=1, **kwargs)).eval(), vocab,
                      train={}, path="tiny.pt")


def test_models_the_page_cannot_run_are_refused_at_build_time(monkeypatch):
    span = TextSpan("abc def abc\n", 0, "t.txt", None)
    ckpt = tiny_ckpt()
    ckpt.model.rnn = torch.nn.LSTM(8, 8, 1, batch_first=True, bidirectional=True)
    with pytest.raises(UserError, match="^a live page cannot run a bidirectional LSTM$") as e:
        build_report(ckpt, span, live=True)
    assert e.value.param == "live"
    monkeypatch.setattr(live_module, "MAX_LIVE_WEIGHTS", 100)
    with pytest.raises(UserError, match=r"^this model has 712 weights .* carries \(100\); pass live_force") as e:
        build_report(tiny_ckpt(), span, live=True)
    assert e.value.param == "live_force"
    assert "neuroscopeLive" in build_report(tiny_ckpt(), span, live=True, live_force=True).html
    build_report(tiny_ckpt(), span)                                # without live, no limit


def test_report_command_live_flags(tmp_path, monkeypatch):
    ckpt = tiny_ckpt()
    save_checkpoint(tmp_path / "m.pt", ckpt)
    (tmp_path / "t.txt").write_text("abc def abc def\n" * 20)
    args = ["report", "--ckpt", str(tmp_path / "m.pt"), "--text", str(tmp_path / "t.txt"), "--split", "all",
            "--out", str(tmp_path / "r.html"), "--live"]
    monkeypatch.setattr(live_module, "MAX_LIVE_WEIGHTS", 100)
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 1 and not (tmp_path / "r.html").exists()
    assert res.output.strip().splitlines() == [
        "Error: this model has 712 weights (1,424 bytes as float16), more than a live page carries (100); "
        "pass --live-force to build it anyway"]
    res = CliRunner().invoke(cli, args + ["--live-force"])
    assert res.exit_code == 0, res.output
    size = (tmp_path / "r.html").stat().st_size
    assert f"live page: {size / 1e6:.2f} MB" in res.output
    assert "neuroscopeLive" in (tmp_path / "r.html").read_text()
