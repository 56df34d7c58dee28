"""Reliability, third round (issue 23), items 6, 7, 8 and 12: what the terminal receives, reports that
scale, checks before work with honest numbers, and what a newcomer hit.

Each test pins one rule, through the command line where a user meets it; the encoding cases run the
command in a real process, since a terminal's encoding and the bytes of its arguments only exist there.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from neuroscope.checkpoint import Checkpoint, TextSpan, load_checkpoint, save_checkpoint
from neuroscope.cli import cli
from neuroscope.model import CharRNN, ModelConfig
from neuroscope.text import Vocab

from test_browser import browser  # noqa: F401 - the headless Chromium fixture (skips without one)

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parents[1]
WP_TEST = 2_940_000                        # War and Peace's test split starts near here
FORGED = "\x1b]0;pwned\x07\x1b[2J\rError: forged\nError: forged too\x9b31m\x7f"


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def one_line_error(result, contains: str = "") -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()                      # progress bars may come first
    assert lines[-1].startswith("Error: ") and sum(ln.startswith("Error") for ln in lines) == 1, result.stderr
    assert contains in lines[-1]
    return lines[-1]


def assert_terminal_safe(out: str) -> None:
    """Nothing that drives a terminal, and no line a reader could take for neuroscope's own error."""
    assert not any(ch in out for ch in "\x1b\x07\r\x9b\x7f"), repr(out)
    assert not any(line.startswith("Error: forged") for line in out.splitlines()), out


@pytest.fixture(scope="module")
def files(tmp_path_factory, shared_models, shared_data):
    from neuroscope.text import read_text
    d = tmp_path_factory.mktemp("reliability_cli")
    text = read_text(shared_data / "warpeace.txt")[WP_TEST:WP_TEST + 20_000]
    (d / "wp20k.txt").write_text(text, encoding="utf-8")
    ckpt = load_checkpoint(shared_models / "wp_lstm2x128.pt")
    save_checkpoint(d / "evil.pt", dataclasses.replace(ckpt, train={**ckpt.train, "text": "corpus" + FORGED}))
    return {"dir": d, "ckpt": shared_models / "wp_lstm2x128.pt", "text": d / "wp20k.txt", "evil": d / "evil.pt"}


# ---------------------------------------------------------------- 6. text in and out of the terminal

def test_info_prints_a_checkpoints_strings_escaped(files):
    out = run("info", "--ckpt", files["evil"])
    assert out.exit_code == 0, out.output
    assert_terminal_safe(out.stdout)
    assert "corpus corpus\\x1b]0;pwned\\x07\\x1b[2J\\rError: forged\\nError: forged too\\x9b31m\\x7f" in out.stdout


def test_json_output_escapes_what_json_alone_leaves_raw(files):
    """json.dumps leaves DEL and the C1 controls (\\x9b is CSI on many terminals) and lone surrogates raw."""
    out = run("info", "--ckpt", files["evil"], "--json")
    assert out.exit_code == 0, out.output
    assert_terminal_safe(out.stdout)
    assert json.loads(out.stdout)["corpus"] == "corpus" + FORGED


def test_sample_prints_its_text_escaped_with_its_own_lines(files):
    out = run("sample", "--ckpt", files["ckpt"], "--prime", "\x1b[2J\rError: forged\n", "--length", "30", "--seed", "1")
    assert out.exit_code == 0, out.output
    assert_terminal_safe(out.stdout)
    assert out.stdout.startswith("\\x1b[2J\\rError: forged\n")      # the prime's own line end stays a line end


def test_file_names_in_errors_and_headers_are_escaped(files):
    err = one_line_error(run("eval", "--ckpt", files["dir"] / f"missing{FORGED}.pt"), "not found")
    assert "\\x1b]0;pwned\\x07" in err and "\\nError: forged too" in err
    named = files["dir"] / "war\x1b[31mpeace.txt"
    named.write_text(files["text"].read_text(encoding="utf-8")[:3000], encoding="utf-8")
    out = run("features", "--text", named, "--feature", "in_quote")
    assert out.exit_code == 0, out.output
    assert_terminal_safe(out.stdout)
    assert "war\\x1b[31mpeace.txt [0, 3,000)" in out.stdout


def neuroscope(*args, env: dict | None = None) -> subprocess.CompletedProcess:
    """The command in a fresh process, as a shell runs it; args may be bytes (a file name that is not UTF-8).
    env: variables to set; None values are removed."""
    cmd = [sys.executable, "-c", "from neuroscope.cli import main; main()", *args]
    environ = {k: v for k, v in {**os.environ, **(env or {})}.items() if v is not None}
    return subprocess.run(cmd, capture_output=True, timeout=300, env=environ, check=False)


@pytest.mark.parametrize("env", [{"PYTHONIOENCODING": "latin-1"}, {"PYTHONIOENCODING": "ascii"},
                                 {"LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONIOENCODING": None}],
                         ids=["latin-1", "ascii", "C-locale"])
def test_a_terminal_that_is_not_utf8_gets_the_whole_output(files, env):
    show = neuroscope("features", "--text", str(files["text"]), "--feature", "in_quote", "--chars", "300",
                      "--split", "all", "--show", "120", env=env)
    assert show.returncode == 0 and b"Traceback" not in show.stderr, show.stderr.decode(errors="replace")
    rows = show.stdout.decode("latin-1").splitlines()
    assert len(rows) >= 4 and "in_quote" in rows[-1]
    info = neuroscope("info", "--ckpt", str(files["evil"]), "--json", env=env)
    assert info.returncode == 0, info.stderr.decode(errors="replace")
    assert json.loads(info.stdout.decode("latin-1"))["corpus"] == "corpus" + FORGED


def test_arguments_that_are_not_utf8_are_one_line_or_work(files):
    """Bytes that are not UTF-8 reach Python as lone surrogates: a text argument is refused in one line,
    a file name works, and either is shown as its bytes (\\xff), never as a traceback."""
    prime = neuroscope("sample", "--ckpt", str(files["ckpt"]), "--prime", b"a\xff", "--length", "5")
    assert prime.returncode == 1 and prime.stderr.decode().strip().splitlines() == \
        ["Error: --prime holds bytes that are not UTF-8 (\\xff at 1); give the text in UTF-8"]
    raw = os.fsencode(files["dir"]) + b"/w\xffp.txt"
    Path(os.fsdecode(raw)).write_text("some \"quoted\" text\n" * 20, encoding="utf-8")
    named = neuroscope("features", "--text", raw, "--feature", "in_quote")
    assert named.returncode == 0, named.stderr.decode(errors="replace")
    assert b"/w\\xffp.txt [0, 380)" in named.stdout
    missing = neuroscope("info", "--ckpt", b"/nonexistent/\xff\xfe.pt")
    assert missing.returncode == 1 and b"Traceback" not in missing.stderr
    assert missing.stderr.decode().strip() == "Error: checkpoint not found: /nonexistent/\\xff\\xfe.pt"


# ---------------------------------------------------------------- 7. reports scale with their inputs

def tiny_checkpoint(text: str, hidden: int = 16, curve: list | None = None) -> Checkpoint:
    torch.manual_seed(0)
    vocab = Vocab.from_text(text)
    model = CharRNN(ModelConfig(len(vocab), "lstm", hidden_size=hidden, num_layers=2)).eval()
    return Checkpoint(model, vocab, train={"text": "tiny.txt", "curve": curve or []}, path="tiny.pt")


def test_a_report_draws_a_long_training_curve_thinned_and_says_so(warpeace):
    from neuroscope.report import build_report
    text = warpeace[WP_TEST:WP_TEST + 1600]
    curve = [{"step": 10 * s, "train_loss": 3 / (1 + s) ** 0.2, "val_loss": 3.1 / (1 + s) ** 0.2} for s in range(20_000)]
    report = build_report(tiny_checkpoint(text, curve=curve), text)
    assert "ns-data" in report.html                        # altair refused the curve's 40,000 rows here
    model = next(s for s in report.sections if s["id"] == "model")
    assert any("holds 20,000 points; the chart draws 1,000 of them" in n for n in model["notes"])
    spec = report.charts["loss"].to_dict()
    rows = next(iter(spec["datasets"].values()))
    assert len(rows) == 2 * 1000 and {r["step"] for r in rows} >= {0, 199_990}


def test_a_report_of_100_units_per_feature_renders(warpeace):
    """A distribution chart of 100 units holds 8,000 rows, over altair's default limit of 5,000."""
    from test_report import FakeProbe, quote_labels

    from neuroscope.report import build_report
    text = warpeace[WP_TEST:WP_TEST + 2000]
    ckpt = tiny_checkpoint(text, hidden=64)
    features = {"in_quote": quote_labels(text)}
    report = build_report(ckpt, TextSpan(text, 0, "wp.txt"), FakeProbe(ckpt.model, text, features), features,
                          n_units=100)
    assert len(report.data["units"]) == 100
    assert 'data-chart="dist0"' in report.html             # altair refused its 8,000 rows here


# ---------------------------------------------------------------- 8. checks before work, honest numbers

@pytest.mark.parametrize("spelling", ["symlink", "hardlink", "dotdot"])
@pytest.mark.parametrize("command", ["match", "explain"])
@pytest.mark.parametrize("victim", ["ckpt", "text"])
def test_an_output_that_is_an_input_under_another_name_is_refused(files, tmp_path, spelling, command, victim):
    ckpt, text = tmp_path / "model.pt", tmp_path / "t.txt"
    ckpt.write_bytes(files["ckpt"].read_bytes())
    text.write_text(files["text"].read_text(encoding="utf-8")[:3000], encoding="utf-8")
    target = {"ckpt": ckpt, "text": text}[victim]
    (tmp_path / "sub").mkdir()
    if spelling == "symlink":
        out = tmp_path / "link"
        out.symlink_to(target)
    elif spelling == "hardlink":
        out = tmp_path / "hard"
        os.link(target, out)
    else:
        out = f"{tmp_path}/sub/../{target.name}"
    before = target.read_bytes()
    extra = ["--span", "100:110"] if command == "match" else ["--unit", "l1.c.1"]
    one_line_error(run(command, "--ckpt", ckpt, "--text", text, "--split", "all", *extra, "--csv", out, "--force"),
                   "is an input of this command")
    assert target.read_bytes() == before


def test_two_outputs_that_are_one_file_are_refused_before_the_work(files, tmp_path, monkeypatch):
    import neuroscope.probe as probe_package

    def no_work(*args, **kwargs):
        raise AssertionError("the probe ran before the outputs were checked")
    monkeypatch.setattr(probe_package, "probe", no_work)
    out = tmp_path / "o.html"
    one_line_error(run("probe", "--ckpt", files["ckpt"], "--text", files["text"], "--chars", "3000", "--split", "all",
                       "--feature", "in_quote", "--csv", out, "--report", f"{tmp_path}/./o.html"), "same file")
    assert not out.exists()


@pytest.mark.parametrize("args, message", [
    (["--max-chars", "1"], "the text to report on needs at least 2 characters"),
    (["--live-force"], "--live-force means something only with live"),
])
def test_report_option_conflicts_are_refused_before_the_probe(files, tmp_path, monkeypatch, args, message):
    import neuroscope.report._write as write

    def no_work(*args, **kwargs):
        raise AssertionError("the probe ran before the options were checked")
    monkeypatch.setattr(write, "probe", no_work)
    one_line_error(run("report", "--ckpt", files["ckpt"], "--text", files["text"], "--split", "all", "--chars", "3000",
                       "--feature", "in_quote", *args, "--out", tmp_path / "r.html"), message)
    assert not (tmp_path / "r.html").exists()


def test_labels_beyond_float32_are_refused_not_made_inf(files, tmp_path):
    labels = np.full(3000, 0.5)
    labels[7] = 1e300                                      # finite as float64, inf as float32
    np.save(tmp_path / "big.npy", labels)
    one_line_error(run("features", "--text", files["text"], "--split", "all", "--chars", "3000",
                       "--feature-file", f"big={tmp_path / 'big.npy'}"), "float32's range")
    labels[7] = 3e38                                       # within it: kept
    np.save(tmp_path / "ok.npy", labels)
    out = run("features", "--text", files["text"], "--split", "all", "--chars", "3000", "--json",
              "--feature-file", f"ok={tmp_path / 'ok.npy'}")
    assert out.exit_code == 0, out.output
    assert np.isfinite(json.loads(out.stdout)["features"]["ok"]["max"])


def test_posix_classes_in_a_regex_are_unicode_classes_as_documented():
    from neuroscope.errors import UserError
    from neuroscope.features.patterns import pattern_labels
    text = "ab é1 Ж_"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        alpha = pattern_labels("w", "[[:alpha:]]+", text)
        not_digit = pattern_labels("n", "[[:^digit:]]", text)
    assert caught == []                         # no "FutureWarning: Possible nested set" under a command's output
    assert alpha.tolist() == [1, 1, 0, 1, 0, 0, 1, 0]
    assert not_digit.tolist() == [1, 1, 1, 1, 0, 1, 1, 1]
    with pytest.raises(UserError, match=r"^regexes w: bad regular expression '\[\[:foo:\]\]': unknown property"):
        pattern_labels("w", "[[:foo:]]", text)
    assert "`[[:alpha:]]+` matches words, é and Ж included" in (ROOT / "docs" / "features.md").read_text(
        encoding="utf-8").replace("\n  ", " ")


def test_a_model_whose_states_are_nan_stops_sample_as_it_stops_eval(files, tmp_path):
    ckpt = load_checkpoint(files["ckpt"])
    with torch.no_grad():              # finite weights whose sums overflow: +inf from the input, -inf from h
        ckpt.model.encoder.weight.fill_(1.0)
        ckpt.model.rnn.weight_ih_l0.fill_(3e38)
        ckpt.model.rnn.weight_hh_l0.fill_(-3e38)
        ckpt.model.rnn.bias_ih_l0.zero_()
        ckpt.model.rnn.bias_hh_l0.zero_()
    save_checkpoint(tmp_path / "nan.pt", ckpt)
    message = "the model's loss is not finite (NaN or inf weights?)"
    one_line_error(run("eval", "--ckpt", tmp_path / "nan.pt", "--text", files["text"], "--chars", "500"), message)
    one_line_error(run("sample", "--ckpt", tmp_path / "nan.pt", "--length", "30", "--seed", "1"), message)
    one_line_error(run("sample", "--ckpt", tmp_path / "nan.pt", "--length", "30", "--temperature", "0"), message)


@pytest.fixture(scope="module")
def matched(files):
    """match over 20,000 characters of War and Peace from a quotation, its text output and its JSON."""
    args = ["match", "--ckpt", files["ckpt"], "--text", files["text"], "--split", "all", "--span", "281:293",
            "--cut", "0.4", "--top", "30"]
    return run(*args), run(*args, "--json")


def test_printed_stream_counts_are_the_ones_used(files, matched):
    from neuroscope.record import stream_layout
    streams, _, warmup = stream_layout(20_000, "auto", 256)
    assert streams == 19                                    # "auto" on 20,000 characters
    got = json.loads(matched[1].stdout)["meta"]
    assert (got["streams"], got["warmup"], got["threshold_streams"]) == (streams, warmup, streams)
    out = run("explain", "--ckpt", files["ckpt"], "--text", files["text"], "--split", "all", "--unit", "l1.c.101",
              "--json")
    assert json.loads(out.stdout)["meta"]["streams"] == streams


# ---------------------------------------------------------------- 12. what a newcomer hit

def test_match_prints_the_hits_top_asks_for_readably_and_no_nan(matched):
    out = matched[0]
    assert out.exit_code == 0, out.output
    lines = out.stdout.splitlines()
    hits = [ln for ln in lines if ln.startswith("  ") and "⟦" in ln and "[" in ln.split("⟦")[0]]
    assert "; the best 30:" in out.stdout and len(hits) == 30
    assert "...'" not in out.stdout and "'..." not in out.stdout and "'['" not in out.stdout    # no Python reprs
    assert '"dear Vilna"⟧' in lines[1] and all("\\n" not in ln for ln in hits)
    assert not re.search(r"\bnan\b", out.stdout)
    assert lines[-1].startswith("hit characters vs features (top hits): in_quote precision")
    assert "in_url" not in lines[-1]                     # absent from War and Peace: left out, not "recall nan"


def test_explain_says_when_the_held_out_part_cannot_test_a_unit(warpeace):
    """A unit that tracks quotes, explained on a text whose held-out part holds none: IoU 0 there means
    untested, and both the command and the report say so; held-out blocks spread over the text test it."""
    from neuroscope.explain import ExplainConfig, ExplainResult, explain_values
    from neuroscope.features import label
    from neuroscope.names import Unit
    from neuroscope.report._sections import explain_section
    quoted = warpeace[WP_TEST:WP_TEST + 3000]
    quoted = quoted[:quoted.rindex('"') + 1]                # every quotation closed
    assert quoted.count('"') % 2 == 0
    text = quoted + quoted[:len(quoted) // 2].replace('"', "'")      # the held-out third: no quotation
    v = label(text, "in_quote") + np.random.default_rng(0).normal(0, 0.05, len(text))
    table = explain_values(v[:, None], text, ["planted"], ExplainConfig(block=0))     # held out: the last third
    best = table.iloc[0]
    assert "in_quote" in best["formula"] and best["formula_heldout"] == 0 and best["iou_heldout"] == 0
    spread = explain_values(v[:, None], text, ["planted"]).iloc[0]        # the default: blocks over the whole text
    assert "in_quote" in spread["formula"] and spread["formula_heldout"] == 30 and spread["iou_heldout"] > 0.5
    printed = ExplainResult(table, table.iloc[:0], table.attrs["meta"]).format()
    assert "note: " in printed and "so its held-out scores say nothing; explain it on more text" in printed
    # the report's default split: 12 blocks, the 3rd, 6th, 9th and 12th held out; here those hold no quotation
    piece = next(warpeace[i:i + 375] for i in range(WP_TEST, WP_TEST + 200_000, 25)
                 if warpeace[i:i + 375].count('"') == 4 and warpeace[i] != '"' and label(warpeace[i:i + 375], "in_quote")[0] == 0)
    blocks = (piece + piece + piece.replace('"', "'")) * 4
    v = label(blocks, "in_quote") + np.random.default_rng(0).normal(0, 0.05, len(blocks))
    section, _ = explain_section([Unit(0, "h", 0)], {"l0.h.0": v.astype(np.float32)}, blocks)
    assert any(n.startswith("Untested units: ") and "l0.h.0" in n for n in section["notes"])
    assert "<td>untested</td>" in section["html"]


def test_explain_prints_a_threshold_at_the_bound_meaningfully():
    from neuroscope.explain import on_where
    assert on_where(1, 0.9, 0.734) == "top 10% (value > 0.734)"
    near = on_where(-1, 0.7, -0.99996)
    assert near == "bottom 30% (value < -0.99996: saturated, within 4e-05 of -1)" and "-1.000" not in near
    assert on_where(-1, 0.7, -1.0) == "bottom 30% (value < -1: never; the unit sits at its bound -1 there)"


def test_ablation_shows_progress(wp_small, warpeace, capsys):
    import pandas as pd

    from neuroscope.probe import ProbeConfig
    from neuroscope.probe._ablation import ablation
    text = warpeace[WP_TEST:WP_TEST + 2000]
    ranking = pd.DataFrame({"feature": "q", "layer": [1, 1], "state": ["c", "c"], "unit": [101, 64],
                            "unit_id": ["l1.c.101", "l1.c.64"]})
    table, _ = ablation(wp_small.model, wp_small.vocab.encode(text), {"q": np.ones(len(text), np.uint8)}, ranking,
                        ProbeConfig(ablate=2, ablate_draws=2, progress=True))
    assert len(table) == 1
    assert "losses" in capsys.readouterr().err              # a bar while the ablation reads the text


def test_docs_say_what_the_live_page_and_the_tests_need():
    live = (ROOT / "docs" / "live.md").read_text(encoding="utf-8")
    page = (ROOT / "neuroscope" / "report" / "_page.py").read_text(encoding="utf-8")
    assert "read line breaks as \\\\r\\\\n" in page                   # the page's box...
    assert '"read line breaks as \\r\\n"' in live                   # ...is the one the doc describes
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    tests = readme[readme.index("The second installs the test extra"):readme.index("## A five-minute tour")]
    assert "chromium" in tests and "chromedriver" in tests and ".ci/run" in tests


def test_the_explanations_table_fits_a_1400_pixel_page(browser, tmp_path, warpeace):  # noqa: F811
    """In headless Chromium at 1,400 px, the widest formulas the reference models get do not widen the page."""
    from selenium.webdriver.support.ui import WebDriverWait

    from neuroscope.report import build_report
    text = warpeace[WP_TEST:WP_TEST + 2000]
    path = tmp_path / "report.html"
    build_report(tiny_checkpoint(text), text, n_units=8).save(path)
    browser.set_window_size(1400, 1000)
    browser.get(path.resolve().as_uri())
    WebDriverWait(browser, 60).until(lambda d: d.execute_script("return window.neuroscopeReady === true"))
    got = browser.execute_script("""
        const rows = Array.from(document.querySelectorAll('#explanations table tr')).filter(r => r.children.length == 7
                                                                                   && r.children[0].tagName == 'TD');
        for (const row of rows) {
          row.children[2].innerHTML = '<code>(line_position>=50 AND NOT line_remaining>=16) AND line_remaining>=1</code>';
          row.children[6].innerHTML = '<code>(line_position>=50 AND NOT line_remaining>=16) OR is_space</code> (0.741)';
        }
        const table = document.querySelector('#explanations table');
        return [rows.length, document.documentElement.scrollWidth, document.documentElement.clientWidth,
                table.getBoundingClientRect().right, document.querySelector('main').getBoundingClientRect().right];""")
    rows, page_width, window, table_right, main_right = got
    assert rows >= 1
    assert page_width <= window and table_right <= main_right, got
    browser.execute_script("document.getElementById('explanations').scrollIntoView()")
    browser.save_screenshot(str(tmp_path / "explanations.png"))
