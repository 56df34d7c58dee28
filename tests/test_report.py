"""The HTML report: its numbers (unit values, predictions, gate saturation), its escaping, its
sections, its size, and the `report` command. The browser checks are in test_browser.py."""
import html
import json
import math
import os
import re
from dataclasses import replace
from html import unescape

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from neuroscope.checkpoint import Checkpoint, TextSpan, save_checkpoint
from neuroscope.cli import cli
from neuroscope.errors import UserError
from neuroscope.model import CharRNN, ModelConfig, count_parameters
from neuroscope.names import Unit, parse_unit
from neuroscope.record import iter_states, most_variable_units, record
from neuroscope.report import Report, ReportConfig, build_report
from neuroscope.report import _excerpt as excerpt_module
from neuroscope.report._charts import distribution_chart, topk_chart
from neuroscope.report._excerpt import read_excerpt
from neuroscope.report._page import render_page
from neuroscope.report._sections import shown_path
from neuroscope.text import Vocab

pytestmark = pytest.mark.usefixtures("one_thread")
SECTIONS = ["model", "samples", "ranking", "units", "predictions", "distribution", "gates", "attribution"]
EVIL = 'He said "run <script>window.__pwned=1</script> now" & left </pre> <b>x</b>.\r\n\tOK\r\n'


def quote_labels(text: str) -> np.ndarray:
    out, inside = np.zeros(len(text), np.uint8), False
    for i, ch in enumerate(text):
        if ch == '"':
            inside = not inside
        out[i] = inside
    return out


def line_position(text: str) -> np.ndarray:
    out, col = np.zeros(len(text), np.int32), 0
    for i, ch in enumerate(text):
        out[i] = col
        col = 0 if ch == "\n" else col + 1
    return out


class FakeProbe:
    """What build_report reads of a ProbeResult: r from real recorded values of the tiny model."""

    def __init__(self, model, text, features):
        ids = Vocab.from_text(text).encode(text)
        cols = {}
        for _, acts in iter_states(model, ids, states=("h", "c")):
            for name, v in acts.items():
                cols.setdefault(name, []).append(np.tanh(v) if name.endswith(".c") else v)
        rows = []
        for f, lab in features.items():
            for name, parts in cols.items():
                v = np.concatenate(parts)
                layer, state = int(name.split(".")[1][1:]), name.split(".")[2]
                for u in range(v.shape[1]):
                    r = float(np.corrcoef(v[:, u], lab)[0, 1])
                    rows.append({"feature": f, "layer": layer, "state": state, "unit": u,
                                 "unit_id": f"l{layer}.{state}.{u}", "r": r, "abs_r": abs(r),
                                 "auroc": 0.5 + r / 2 if f == "in_quote" else float("nan"), "p_value": 1e-9,
                                 "p_adjusted": 1e-7, "selectivity": 2 * r, "control_max_abs_r": 0.05, "flag": ""})
        self.ranking = pd.DataFrame(rows).sort_values(["feature", "abs_r"], ascending=[True, False],
                                                      ignore_index=True)
        self.topk = pd.DataFrame([{"feature": f, "k": k, "score": 0.6 + 0.05 * k, "metric": "auroc"}
                                  for f in features for k in (1, 2, 4)])
        self.meta = {"chars": len(text)}

    def top_units(self, feature, n):
        return list(self.ranking[self.ranking["feature"] == feature]["unit_id"][:n])


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    text = EVIL * 30
    vocab = Vocab.from_text(text)
    model = CharRNN(ModelConfig(len(vocab), "lstm", hidden_size=16, num_layers=2)).eval()
    train = {"text": "evil.txt", "test_loss_nats": 1.5, "best_val_loss_nats": 1.6,
             "curve": [{"step": s, "seconds": s / 10, "train_loss": 3 / s ** 0.2, "val_loss": 3.1 / s ** 0.2}
                       for s in range(100, 1100, 100)],
             "samples": {"1200": "late <i>sample</i>", "300": "mid\r\nsample", "100": "early", "2000": "last"}}
    ckpt = Checkpoint(model, vocab, train=train, path="/nowhere/tiny.pt")
    span = TextSpan(text, 1000, "evil.txt", "test")
    features = {"in_quote": quote_labels(text), "line_position": line_position(text)}
    return ckpt, span, features, FakeProbe(model, text, features)


@pytest.fixture(scope="module")
def report(tiny):
    ckpt, span, features, result = tiny
    return build_report(ckpt, span, result, features, max_chars=1000)


def page_data(html: str) -> dict:
    block = re.search(r'<script type="application/json" id="ns-data">(.*?)</script>', html, re.S).group(1)
    return json.loads(block)


def test_recorded_unit_values_match_nn_lstm(tiny):
    ckpt, span, _, _ = tiny
    model, ids = ckpt.model, ckpt.vocab.encode(span.text[:300])
    units = [Unit(1, "h", 3), Unit(1, "h", 15), Unit(0, "c", 5), Unit(1, "c", 0)]
    values = read_excerpt(model, ids, units, chunk=64).values
    with torch.no_grad():
        out, (h_n, c_n) = model.rnn(model.encoder(torch.as_tensor(ids)[None]))
    np.testing.assert_allclose(values["l1.h.3"], out[0, :, 3].numpy(), atol=1e-5)
    np.testing.assert_allclose(values["l1.h.15"], out[0, :, 15].numpy(), atol=1e-5)
    assert values["l0.c.5"][-1] == pytest.approx(float(c_n[0, 0, 5]), abs=1e-5)
    assert values["l1.c.0"][-1] == pytest.approx(float(c_n[1, 0, 0]), abs=1e-5)


def test_page_carries_unit_values_and_colours_c_by_tanh(tiny, report):
    ckpt, span, _, result = tiny
    data = page_data(report.html)
    ids = ckpt.vocab.encode(span.text[:1000])
    best = parse_unit(result.top_units("in_quote", 1)[0], ckpt.config)
    want = record(ckpt.model, ids, (best.state,))[best.quantity][:, best.index]
    np.testing.assert_allclose(data["units"][best.id]["values"], want, rtol=1e-3, atol=1e-7)
    assert data["units"][best.id]["tanh"] == (best.state == "c")
    assert len(data["units"][best.id]["values"]) == 1000


def test_predictions_match_one_softmax_over_the_whole_span(tiny):
    ckpt, span, _, _ = tiny
    ids = ckpt.vocab.encode(span.text[:500])
    pred = read_excerpt(ckpt.model, ids, [], k=5, chunk=64).pred   # chunked, state carried
    with torch.no_grad():
        probs = torch.softmax(ckpt.model(torch.as_tensor(ids)[None])[0][0], -1).numpy()   # [T, V]
    np.testing.assert_allclose(pred["top_p"], -np.sort(-probs, axis=1)[:, :5], atol=1e-5)
    np.testing.assert_array_equal(pred["top_ids"][:, 0], probs.argmax(1))
    assert math.isnan(pred["p_actual"][0])
    np.testing.assert_allclose(pred["p_actual"][1:], probs[np.arange(499), ids[1:]], atol=1e-6)


def test_gate_saturation_counts_gates_below_01_and_above_09(tiny):
    ckpt, span, _, _ = tiny
    ids = ckpt.vocab.encode(span.text[:400])
    sat = read_excerpt(ckpt.model, ids, [], chunk=100).saturation
    gates = {}
    for _, acts in iter_states(ckpt.model, ids, states=("gates",)):
        for k, v in acts.items():
            gates.setdefault(k, []).append(v)
    f1 = np.concatenate(gates["rnn.l1.gate_f"])
    row = sat[(sat.layer == 1) & (sat.gate == "f")].sort_values("unit")
    np.testing.assert_allclose(row["left"], (f1 < 0.1).mean(0))
    np.testing.assert_allclose(row["right"], (f1 > 0.9).mean(0))
    assert set(sat["gate"]) == {"f", "i", "o"} and len(sat) == 2 * 3 * 16


def test_corpus_text_is_escaped_and_kept_exactly(tiny, report):
    html = report.html
    assert "<script>window.__pwned" not in html
    assert "</pre> <b>x</b>" not in html
    data = page_data(html)
    assert data["text"] == tiny[1].text[:1000]                   # CRLF and tab included
    assert "late &lt;i&gt;sample&lt;/i&gt;" in html             # samples are escaped too
    # Only our own scripts: the inline bundle, the JSON data block and the page script.
    assert html.count("<script") == 3


def test_sections_in_order_with_table_of_contents(report):
    html = report.html
    found = re.findall(r'<section id="([a-z]+)">', html)
    assert found == SECTIONS
    toc = re.search(r'<nav class="toc">(.*?)</nav>', html, re.S).group(1)
    assert re.findall(r'href="#([a-z]+)"', toc) == SECTIONS
    for n, s in enumerate(SECTIONS, 1):
        assert re.search(rf'<section id="{s}">\s*<h2>{n}\. ', html)


def test_model_card_numbers(tiny, report):
    ckpt = tiny[0]
    card = dict(report.sections[0]["card"])
    assert card["parameters"] == f"{count_parameters(ckpt.model):,}"
    assert card["layers x units"] == "2 x 16"
    assert card["test loss"] == f"1.5000 nats/char, {1.5 / math.log(2):.4f} bits/char"
    ids = torch.as_tensor(ckpt.vocab.encode(tiny[1].text[:1000]))
    with torch.no_grad():
        loss = float(torch.nn.functional.cross_entropy(ckpt.model(ids[None, :-1])[0][0], ids[1:]))
    assert card["loss on the shown excerpt"].startswith(f"{loss:.4f} nats/char")
    assert report.charts["loss"].to_dict()["mark"]["type"] == "line"


def test_samples_in_numeric_step_order(report):
    steps = [s for s, _ in report.sections[1]["samples"]]
    assert steps == ["step 100", "step 300", "step 1,200", "step 2,000"]


def test_ranking_table_rows_are_the_top_units(tiny, report):
    result = tiny[3]
    feat = {f["name"]: f for f in report.sections[2]["features"]}
    assert list(feat) == ["in_quote", "line_position"]
    rows = feat["in_quote"]["rows"]
    top = result.ranking[result.ranking.feature == "in_quote"].head(10)
    assert [r[1] for r in rows] == list(top["unit_id"])
    assert rows[0][4] == f"{top['r'].iloc[0]:+.3f}"
    assert feat["line_position"]["rows"][0][5] == "–"          # no AUROC for a count feature
    spec = report.charts["rank0"].to_dict()
    values = next(iter(spec["datasets"].values()))
    assert [v["unit_id"] for v in values] == list(top["unit_id"])


def test_picker_offers_each_features_top_units(tiny, report):
    result = tiny[3]
    panels = report.sections[3]["panels"]
    assert [p["feature"] for p in panels] == ["in_quote", "line_position"]
    assert [o["id"] for o in panels[0]["options"]] == result.top_units("in_quote", 5)
    data = page_data(report.html)
    assert set(data["units"]) == set(result.top_units("in_quote", 5)) | set(result.top_units("line_position", 5))
    assert data["labels"]["in_quote"] == quote_labels(tiny[1].text[:1000]).tolist()


def test_truncation_is_announced(tiny):
    ckpt, span, features, result = tiny
    rep = build_report(ckpt, span, result, features, max_chars=200)
    assert any(f"first 200 of {len(span.text):,} characters" in line for line in rep.subtitle)
    assert len(page_data(rep.html)["text"]) == 200
    full = build_report(ckpt, TextSpan(span.text[:150], 0, "x", None), None, {}, max_chars=200)
    assert not any("first" in line for line in full.subtitle)


def test_explicit_units_and_bad_unit_ids(tiny):
    ckpt, span, features, _ = tiny
    rep = build_report(ckpt, span, None, {"in_quote": features["in_quote"]}, units=["l0.c.3", "l1.h.0"], max_chars=300)
    assert [o["id"] for o in rep.sections[3]["panels"][0]["options"]] == ["l0.c.3", "l1.h.0"]
    assert "No probe result" in rep.sections[2]["notes"][0]
    for bad, why in [("l2.c.1", "layers 0..1"), ("l0.c.16", "0..15"), ("c.3", "layer.state.unit"),
                     ("l0.x.1", "does not exist")]:
        with pytest.raises(UserError, match=re.escape(why)):
            parse_unit(bad, ckpt.config)
    gru = ModelConfig(10, "gru", hidden_size=8, num_layers=1)
    with pytest.raises(UserError, match="states"):
        parse_unit("l0.c.1", gru)
    assert parse_unit("l0.gate_z.7", gru) == Unit(0, "gate_z", 7)


def test_without_features_or_units_shows_the_most_variable_units(tiny):
    ckpt, span, _, _ = tiny
    ids = ckpt.vocab.encode(span.text[:400])
    chosen = most_variable_units(ckpt.model, ids, n=3)
    var = {}
    for _, acts in iter_states(ckpt.model, ids, states=("h", "c")):
        for name, v in acts.items():
            var.setdefault(name, []).append(np.tanh(v) if name.endswith(".c") else v)
    scored = sorted(((np.concatenate(v)[:, u].var(), f"l{n.split('.')[1][1:]}.{n.split('.')[2]}.{u}")
                     for n, v in var.items() for u in range(16)), reverse=True)
    assert [u.id for u in chosen] == [uid for _, uid in scored[:3]]
    rep = build_report(ckpt, TextSpan(span.text[:400], 0, "x", None), None, None, n_units=3)
    assert [o["id"] for o in rep.sections[3]["panels"][0]["options"]] == [u.id for u in chosen]
    assert rep.sections[5]["charts"] == []                       # nothing to compare without labels


def test_one_pass_gives_what_separate_passes_give(wp_small, warpeace):
    """Values, saturation, guesses and the most variable units from one traced pass over 2,500
    characters (3 chunks) equal those of record(), the gates, one softmax and most_variable_units."""
    model, ids = wp_small.model, wp_small.vocab.encode(warpeace[10_000:12_500])
    units = [Unit(1, "c", 7), Unit(0, "h", 3), Unit(1, "gate_f", 9)]
    ex = read_excerpt(model, ids, units, n_variable=4)
    rec = record(model, ids, ("h", "c", "gates"))
    for u in units + ex.variable:
        want = rec[u.quantity][:, u.index]
        np.testing.assert_allclose(ex.values[u.id], want, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(want).max()))
    assert ex.variable == most_variable_units(model, ids, n=4)
    row = ex.saturation[(ex.saturation.layer == 0) & (ex.saturation.gate == "i")].sort_values("unit")
    np.testing.assert_allclose(row["left"], (rec["rnn.l0.gate_i"] < 0.1).mean(0))
    np.testing.assert_allclose(row["right"], (rec["rnn.l0.gate_i"] > 0.9).mean(0))
    with torch.no_grad():
        probs = torch.softmax(model(torch.as_tensor(ids)[None])[0][0], -1).numpy()     # [N, V]
    np.testing.assert_allclose(ex.pred["top_p"], -np.sort(-probs, axis=1)[:, :5], atol=1e-5)
    np.testing.assert_allclose(ex.pred["p_actual"][1:], probs[np.arange(len(ids) - 1), ids[1:]], atol=1e-5)


@pytest.mark.parametrize("ranked", [True, False], ids=["ranking", "most-variable"])
@pytest.mark.parametrize("live", [False, True], ids=["static", "live"])
def test_a_report_reads_its_excerpt_once(tiny, recurrence_steps, ranked, live):
    ckpt, span, features, result = tiny
    n = 2400                                                     # three chunks of read_excerpt
    steps = recurrence_steps(ckpt.model)
    rep = build_report(ckpt, span, result if ranked else None, features if ranked else None, max_chars=n, live=live,
                       attribute=0)                          # its own passes: tests/test_causes.py
    assert steps.steps == n and steps.calls == 3
    assert len(page_data(rep.html)["units"]) == (10 if ranked else 5)


def test_past_the_memory_cap_a_variance_pass_picks_the_most_variable_units(tiny, recurrence_steps, monkeypatch):
    ckpt, span, _, _ = tiny
    kept = build_report(ckpt, span, max_chars=500)                 # every h and c kept: one pass
    per_char = 4 * 16 * 4                                        # h and c of 2 layers of 16 units, float32
    monkeypatch.setattr(excerpt_module, "MAX_KEPT_BYTES", 499 * per_char)
    steps = recurrence_steps(ckpt.model)
    over = build_report(ckpt, span, max_chars=500, attribute=0)
    assert steps.steps == 2 * 500                                # the variance pass, then the one pass
    assert page_data(over.html)["units"] == page_data(kept.html)["units"]


def test_settings_come_from_a_config_or_overrides(tiny):
    ckpt, span, features, result = tiny
    cfg = ReportConfig(units=["l0.c.3", "l1.h.0"], max_chars=300)
    assert cfg.units == ("l0.c.3", "l1.h.0")
    a = build_report(ckpt, span, None, None, cfg)
    b = build_report(ckpt, span, None, None, units=["l0.c.3", "l1.h.0"], max_chars=300)
    assert page_data(a.html)["units"] == page_data(b.html)["units"] and len(page_data(a.html)["text"]) == 300
    assert len(page_data(build_report(ckpt, span, None, None, cfg, max_chars=200).html)["text"]) == 200
    with pytest.raises(UserError, match=r"^'max_char' is not a setting of ReportConfig; its settings: units, "):
        build_report(ckpt, span, max_char=200)
    for bad, msg in [({"max_chars": 0}, "max_chars must be >= 1, got 0"), ({"n_units": 0}, "n_units must be >= 1"),
                     ({"units": "l0.c.3"}, "a list of unit ids")]:
        with pytest.raises(UserError, match=msg):
            ReportConfig(**bad)


def test_a_plain_string_is_reported_from_character_0(tiny):
    ckpt, span, _, _ = tiny
    rep = build_report(ckpt, span.text, units=["l0.h.1"], max_chars=100)
    assert rep.subtitle[0] == "<text>, characters 0 to 100" and page_data(rep.html)["start"] == 0


def test_distribution_fractions_sum_to_one_per_group(tiny):
    ckpt, span, features, _ = tiny
    lab = features["in_quote"][:600]
    u = Unit(1, "c", 2)
    values = read_excerpt(ckpt.model, ckpt.vocab.encode(span.text[:600]), [u]).values
    spec = distribution_chart("in_quote", "binary", lab, values, [u]).to_dict()
    df = pd.DataFrame(next(iter(spec["datasets"].values())))
    sums = df.groupby("group")["fraction"].sum()
    np.testing.assert_allclose(sums.values, 1.0)
    inside = df[df.group.str.startswith("inside")]
    assert inside.group.iloc[0] == f"inside in_quote (n={int(lab.sum())})"


def test_gru_and_plain_rnn_reports(tiny):
    _, span, features, _ = tiny
    text = span.text[:200]
    vocab = Vocab.from_text(span.text)
    for cell, gates in (("gru", {"reset gate", "update gate"}), ("rnn", set())):
        torch.manual_seed(1)
        ck = Checkpoint(CharRNN(ModelConfig(len(vocab), cell, hidden_size=8, num_layers=1)).eval(), vocab)
        rep = build_report(ck, TextSpan(text, 0, "x", None), None, {"in_quote": features["in_quote"][:200]},
                           units=["l0.h.1"])
        if gates:
            df = pd.DataFrame(next(iter(rep.charts["gates"].to_dict()["datasets"].values())))
            assert set(df["gate"]) == gates
        else:
            assert "gates" not in rep.charts and "no gates" in rep.sections[6]["notes"][0]


def test_size_stays_small_for_5000_chars_and_5_units(wp_small, warpeace):
    from neuroscope.text import split_span
    s, _ = split_span(len(warpeace), "test")
    text = warpeace[s:s + 5000]
    feats = {"in_quote": quote_labels(text)}
    rep = build_report(wp_small, TextSpan(text, s, "warpeace.txt", "test"), None, feats,
                       units=["l1.c.0", "l1.c.1", "l1.h.2", "l0.c.3", "l0.h.4"])
    html = rep.html
    assert len(html.encode("utf-8")) < 5_000_000
    data = page_data(html)
    assert len(data["pred"]["top"]) == 5 * 5000 and len(data["units"]) == 5
    assert data["text"] == text and data["text"][0] != "\r"


def test_jupyter_views(report):
    page = report._repr_html_()
    assert page.startswith("<iframe srcdoc=") and "&lt;script" in page
    assert page_data(unescape(page.split('srcdoc="', 1)[1].split('" style=')[0]))["text"] == page_data(report.html)["text"]
    units = report.view("units")
    assert [s["id"] for s in units.sections] == ["units"] and units.charts == {}
    assert "<nav" not in units.html and "window.vegaEmbed=" not in units.html    # no Vega bundle without charts
    assert set(report.view("gates").charts) == {"gates"}
    with pytest.raises(UserError, match="no section"):
        report.view("nope")


def test_save_is_atomic_and_keeps_the_old_file_on_failure(report, tmp_path, monkeypatch):
    out = tmp_path / "r.html"
    assert report.save(out) == str(out) and out.read_bytes().decode("utf-8") == report.html
    with pytest.raises(UserError, match="exists; set force"):
        report.save(out)                                         # never replaced without force
    out.write_text("<!DOCTYPE html>old", encoding="utf-8")

    def boom(*a, **k):
        raise RuntimeError("disk full")
    monkeypatch.setattr("neuroscope.files.os.fsync", boom)
    with pytest.raises(RuntimeError):
        report.save(out, force=True)
    assert out.read_text(encoding="utf-8") == "<!DOCTYPE html>old"
    assert os.listdir(out.parent) == ["r.html"]                  # no temp file left behind
    monkeypatch.undo()
    assert report.save(out, force=True) == str(out) and out.read_bytes().decode("utf-8") == report.html
    with pytest.raises(UserError, match="folder that is not an HTML page"):
        report.save(tmp_path, force=True)
    with pytest.raises(UserError, match="is an input"):
        report.save(out, force=True, inputs=[out])


def test_topk_curve_has_a_log_axis_so_k_all_does_not_squash_it():
    df = pd.DataFrame({"feature": "f", "k": [1, 2, 4, 256, 1536], "score": [.6, .7, .8, .9, .95], "metric": "auroc"})
    spec = topk_chart(df).to_dict()
    assert spec["encoding"]["x"]["scale"]["type"] == "log"


def test_ranking_note_says_r_is_on_tanh_c(report):
    note = report.sections[2]["notes"][0]
    assert "tanh(c)" in note and "c itself" not in note


def test_paths_are_shown_relative_to_the_current_folder(tmp_path, monkeypatch):
    (tmp_path / "work" / "repo").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "work" / "repo")
    assert shown_path(tmp_path / "work" / "repo" / "m.pt") == "m.pt"
    assert shown_path(tmp_path / "work" / "shared" / "m.pt") == os.path.join("..", "shared", "m.pt")
    assert shown_path("data/x.txt") == "data/x.txt"                 # as given
    far = str(tmp_path.parent / "elsewhere" / "m.pt")
    assert shown_path(far) == far                                   # no ../../.. chains
    assert shown_path("<checkpoint excerpt>") == "<checkpoint excerpt>"


def test_report_shows_paths_as_given_not_the_machines_folders(tiny, monkeypatch):
    ckpt, span, _, _ = tiny
    monkeypatch.chdir("/")
    rep = build_report(replace(ckpt, path="/nowhere/tiny.pt"), replace(span, source="/corpora/evil.txt"),
                       None, None, units=["l0.h.1"], max_chars=100)
    assert dict(rep.sections[0]["card"])["checkpoint"] == "nowhere/tiny.pt"
    assert rep.subtitle[0].startswith("corpora/evil.txt, characters 1,000")


def test_free_form_html_sections_render_through_the_same_page():
    import altair as alt
    chart = alt.Chart(pd.DataFrame({"x": [1, 2]})).mark_point().encode(x="x:Q")
    page = Report("An analysis", ["intro <b>escaped</b>"],
                  [{"id": "one", "title": "First", "kind": "html", "html": "<table><tr><td>kept</td></tr></table>",
                    "charts": [("c0", None)]},
                   {"id": "two", "title": "Second", "kind": "html", "html": "<p>2</p>"}], {}, {"c0": chart}).html
    assert "<td>kept</td>" in page and "intro &lt;b&gt;escaped&lt;/b&gt;" in page
    assert re.findall(r'<section id="([a-z]+)">\s*<h2>(\d)\. ', page) == [("one", "1"), ("two", "2")]
    assert 'data-chart="c0"' in page and page_data(page)["charts"]["c0"]["mark"]["type"] == "point"
    assert render_page("t", [], [], {}).count("<section") == 0


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory, tiny):
    ckpt, span, _, _ = tiny
    d = tmp_path_factory.mktemp("cli")
    save_checkpoint(d / "tiny.pt", Checkpoint(ckpt.model, ckpt.vocab, train=ckpt.train))
    (d / "evil.txt").write_text(span.text, encoding="utf-8", newline="")
    return d


def test_report_command_writes_the_page(tiny_files):
    d = tiny_files
    out = d / "r.html"
    res = CliRunner().invoke(cli, ["report", "--ckpt", str(d / "tiny.pt"), "--text", str(d / "evil.txt"),
                                   "--split", "all", "--unit", "l1.c.2", "--unit", "l0.h.1", "--max-chars", "700",
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert str(out) in res.output
    data = page_data(out.read_text(encoding="utf-8"))
    assert set(data["units"]) == {"l1.c.2", "l0.h.1"} and len(data["text"]) == 700


def test_report_command_ranks_features_with_the_probe(tiny_files):
    d = tiny_files
    out = d / "ranked.html"
    res = CliRunner().invoke(cli, ["report", "--ckpt", str(d / "tiny.pt"), "--text", str(d / "evil.txt"),
                                   "--split", "all", "--feature", "in_quote", "--feature", "line_position",
                                   "--top", "3", "--max-chars", "500", "--out", str(out)])
    assert res.exit_code == 0, res.output
    html = out.read_text(encoding="utf-8")
    data = page_data(html)
    assert data["labels"]["in_quote"] == quote_labels(data["text"]).tolist()
    assert len(data["units"]) <= 6 and all(len(u["values"]) == 500 for u in data["units"].values())
    rows = re.findall(r'<tr class="pick" data-panel="p0" data-unit="(l\d\.[hc]\.\d+)"', html)
    assert len(rows) == 10 and rows[:3] == list(data["units"])[:3]


def test_report_command_bad_input_is_one_line_and_keeps_old_output(tiny_files):
    d = tiny_files
    out = d / "keep.html"
    out.write_text("previous report", encoding="utf-8")
    base = ["report", "--ckpt", str(d / "tiny.pt"), "--text", str(d / "evil.txt"), "--out", str(out)]
    for extra, msg in [(["--unit", "l7.c.1"], "does not exist"), (["--max-chars", "0"], "--max-chars"),
                       (["--unit", "nonsense"], "bad unit")]:
        res = CliRunner().invoke(cli, base + extra)
        assert res.exit_code == 1 and res.output.startswith("Error:") and msg in res.output, res.output
        assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1
    res = CliRunner().invoke(cli, base[:-1] + [str(d)])
    assert res.exit_code == 1 and "directory" in res.output
    assert out.read_text(encoding="utf-8") == "previous report"


def test_explanations_section_gives_each_shown_unit_its_best_formula(tiny):
    """The section's rows are explain_values on the shown units' values (tanh(c) for cell states)."""
    from neuroscope.explain import explain_values
    ckpt, span, features, result = tiny
    n = min(len(span.text), 3000)
    rep = build_report(ckpt, span, result, features, max_chars=n)
    section = next(s for s in rep.sections if s["id"] == "explanations")
    units = [parse_unit(u, ckpt.config) for u in page_data(rep.html)["units"]]
    values = read_excerpt(ckpt.model, ckpt.vocab.encode(span.text[:n]), units).values
    live = [u for u in units if np.ptp(values[u.id]) > 0]
    V = np.stack([np.tanh(values[u.id]) if u.squash else values[u.id] for u in live], 1)
    best = explain_values(V, span.text[:n], [u.id for u in live]).query("rank == 1")
    assert len(best) == len(live) > 0
    for r in best.itertuples():
        row = re.search(rf"<tr><td>{re.escape(r.unit)}</td>.*?</tr>", section["html"]).group(0)
        assert html.escape(r.formula) in row and f"{r.iou_heldout:.3f}" in row and f"{r.simulation_r:+.3f}" in row
        # Its contexts: the first "top" one is at the unit's extreme value on its side.
        ctx = re.search(rf"<summary>{re.escape(r.unit)}: contexts</summary>(.*?)</details>", section["html"], re.S)
        v = V[:, [u.id for u in live].index(r.unit)]
        top = re.search(r"<code>\s*top ([+-]\d\.\d\d)</code>", ctx.group(1)).group(1)
        assert float(top) == pytest.approx((v.max() if r.sign > 0 else v.min()), abs=0.006)
    # Too short for a fitting and a held-out part: no section.
    assert "explanations" not in [s["id"] for s in build_report(ckpt, span, result, features, max_chars=1000).sections]
