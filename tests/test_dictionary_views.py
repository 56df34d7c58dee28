"""A dictionary's latents in the views that took units only: match (exact latent quantiles, latent
queries, "-" refused) and the report (ranking, text coloured by activation from 0 to its largest,
distributions, the sections that cannot show latents saying so), in Python, on the command line and
in a browser."""
from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
from test_browser import browser, expected_colour  # noqa: F401 (browser: a fixture)
from test_dictionary import SMALL, one_line_error, run

from neuroscope.checkpoint import choose_text
from neuroscope.dictionary import iter_latents, latent_quantiles, latent_values, latents_of, train_dictionary
from neuroscope.errors import UserError
from neuroscope.features import label
from neuroscope.match import match
from neuroscope.names import Latent
from neuroscope.probe import probe
from neuroscope.report import build_report
from neuroscope.report import _excerpt as excerpt_module

pytestmark = pytest.mark.usefixtures("one_thread")
CHARS = 6000                 # of War and Peace's test split


@pytest.fixture(scope="module")
def d(wp_small, warpeace, tmp_path_factory):
    """A small dictionary (256 latents, 8 on) over l1.c, trained on 20,000 characters of War and Peace."""
    out = tmp_path_factory.mktemp("dict") / "d"
    return train_dictionary(wp_small.model, wp_small.vocab.encode(warpeace[:20_000]), "rnn.l1.c", out, **SMALL)


@pytest.fixture(scope="module")
def text(wp_small, shared_data):
    return choose_text(wp_small, str(shared_data / "warpeace.txt"), "test", chars=CHARS).text


@pytest.fixture(scope="module")
def z(wp_small, d, text):
    return exact_latents(d, wp_small.model, wp_small.vocab.encode(text))


@pytest.fixture(scope="module")
def span(wp_small, d, text, z):
    """(latent, (a, b)): the longest run of 4+ characters where one latent is on (above its 0.9-quantile)
    with 10 characters off on each side, after character 300: a span match should find it from."""
    on = z > latent_quantiles(d, wp_small.model, wp_small.vocab.encode(text), 0.9, streams=1)
    runs = []
    for j in range(d.sae.d_sae):
        for a, b in np.flatnonzero(np.diff(np.r_[0, on[:, j].astype(np.int8), 0])).reshape(-1, 2):
            if b - a >= 4 and a >= 300 and not on[a - 10:a, j].any() and not on[b:b + 10, j].any():
                runs.append((b - a, -a, j))
    length, a, j = max(runs)
    return int(j), (-int(a), -int(a) + int(length))


def exact_latents(d, model, ids) -> np.ndarray:
    """float32 [len(ids), latents], one exact stream (latent_values rounds to float16)."""
    out = np.empty((len(ids), d.sae.d_sae), np.float32)
    for start, z in iter_latents(d, model, ids, streams=1):
        out[start:start + len(z)] = z
    return out


def page_data(html: str) -> dict:
    return json.loads(re.search(r'<script type="application/json" id="ns-data">(.*?)</script>', html, re.S).group(1))


# ------------------------------------------------------------------ match

def test_latent_quantiles_are_exact_and_0_for_latents_on_less_than_their_share(wp_small, d, text, z):
    ids = wp_small.vocab.encode(text)
    for q in (0.9, 0.99):
        got = latent_quantiles(d, wp_small.model, ids, q, streams=1)
        want = np.sort(z, axis=0)[math.ceil(q * len(ids)) - 1]          # the ceil(qN)-th smallest value
        np.testing.assert_array_equal(got, want)
        rare = (z > 0).sum(0) <= len(ids) - math.ceil(q * len(ids))
        assert rare.any() and (got[rare] == 0).all() and (got[~rare] > 0).all()
        assert ((z > got).sum(0) <= len(ids) * (1 - q) + 1e-9).all()     # above it: at most a (1-q) share


def test_a_latent_query_hits_exactly_where_its_latents_are_on(wp_small, d, text, z, span):
    ids = wp_small.vocab.encode(text)
    j, (a, b) = span
    other = int(np.argsort(-(z[a:b] > 0).mean(0) + (np.arange(d.sae.d_sae) == j), kind="stable")[0])
    names = [Latent(d.quantity, j).id, Latent(d.quantity, other).id]
    result = match(wp_small, text, (a, b), dictionary=d, units=names, cut=0.5, min_length=1, streams=1, top=10_000)
    q = result.query
    assert list(q["unit"]) == names and (q["sign"] == 1).all() and set(q["state"]) == {"c/d"}
    np.testing.assert_array_equal(q["threshold"], latent_quantiles(d, wp_small.model, ids, 0.9, streams=1)[[j, other]])
    # A hit is a run of characters where at least one of the two is on, as latent_values gives them,
    # except the runs that overlap the span.
    on = (latent_values(d, wp_small.model, ids, latents_of(d, names), streams=1).astype(np.float32)
          > q["threshold"].to_numpy(np.float32)).any(1)
    want = on.copy()
    for s, e in np.flatnonzero(np.diff(np.r_[0, on.astype(np.int8), 0])).reshape(-1, 2):
        if s < b and e > a:
            want[s:e] = False
    hit = np.zeros(len(ids), bool)
    for s, e in zip(result.hits["start"], result.hits["end"]):
        hit[s:e] = True
    np.testing.assert_array_equal(hit, want)
    assert result.meta["on_chars"] == int(on.sum()) > 50 and result.meta["hits"] == len(result.hits) > 10
    assert result.meta["candidates"] == "latents" and "exact quantiles" in result.meta["thresholds_from"]
    assert result.format(3).startswith(f"query: 2 latents on inside [{a}, {b})")


def test_auto_match_picks_the_latents_on_inside_the_span_and_off_around_it(wp_small, d, text, span):
    j, (a, b) = span
    result = match(wp_small, text, (a, b), dictionary=d, streams=1)           # every setting at its default
    q = result.query
    assert 1 <= len(q) <= 10 and q["unit"].str.startswith("l1.c/d.").all()
    assert q.set_index("index").loc[j, ["on_inside", "on_around"]].tolist() == [1.0, 0.0]
    # on_inside / on_around, recomputed from the exact recording select_units reads (lead + margins)
    lo, hi = a - 10 - 256, b + 10
    z = exact_latents(d, wp_small.model, wp_small.vocab.encode(text[lo:hi]))
    on = z[:, q["index"].to_numpy()] > q["threshold"].to_numpy(np.float32)
    np.testing.assert_allclose(q["on_inside"], on[a - lo:b - lo].mean(0))
    np.testing.assert_allclose(q["on_around"], np.r_[on[a - 10 - lo:a - lo], on[b - lo:]].mean(0))
    assert (q["on_inside"] >= 0.5).all() and (q["score"] >= 0.3).all()
    assert list(q["score"]) == sorted(q["score"], reverse=True)


def test_latent_queries_are_checked_in_one_line(wp_small, d, text, span):
    for units, message in (("l1.c/d.3,-l1.c/d.7", r"^-l1\.c/d\.7: a latent is on when active, never when low"),
                           ("l1.c.3", "bad latent 'l1.c.3'"), ("l0.h/d.3", "is not a latent of the dictionary"),
                           ("l1.c/d.256", "does not exist: the dictionary has 256"),
                           ("l1.c/d.3,l1.c/d.3", "given twice")):
        with pytest.raises(UserError, match=message) as err:
            match(wp_small, text, span[1], dictionary=d, units=units)
        assert "\n" not in str(err.value)
    with pytest.raises(UserError, match="no latent is on inside span"):
        match(wp_small, "a" * 3000, (2000, 2010), dictionary=d)


def test_the_match_command_takes_a_dictionary(shared_models, shared_data, d, span, tmp_path):
    ckpt, txt = shared_models / "wp_lstm2x128.pt", shared_data / "warpeace.txt"
    j, (a, b) = span
    base = ["match", "--ckpt", ckpt, "--text", txt, "--split", "test", "--chars", CHARS, "--span", f"{a}:{b}",
            "--streams", 1, "--warmup", 0]
    res = run(*base, "--dictionary", d.path, "--units", f"l1.c/d.{j},l1.c/d.0", "--cut", 0.5, "--json",
              "--csv", tmp_path / "hits.csv")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert [r["unit"] for r in out["query"]] == [f"l1.c/d.{j}", "l1.c/d.0"] and out["meta"]["candidates"] == "latents"
    assert out["query"][0]["on_inside"] == 1.0 and out["hits"]
    assert (tmp_path / "hits.csv").read_text().startswith("rank,start,end")
    one_line_error(run(*base, "--dictionary", d.path, "--units", "-l1.c/d.3"), "a latent is on when active")
    one_line_error(run(*base[:2], shared_models / "wp_lstm3x512.pt", *base[3:], "--dictionary", d.path,
                       "--csv", tmp_path / "other.csv"), "trained on another model")
    assert not (tmp_path / "other.csv").exists()


# ------------------------------------------------------------------ the report

@pytest.fixture(scope="module")
def ranked(wp_small, d, text):
    """A probe over latents, and the report built from it on the first 2,000 characters."""
    labels = {"in_quote": label(text, "in_quote")}
    result = probe(wp_small, text, labels, dictionary=d, sparse=False, null=False, control=False, streams=1)
    return result, labels, build_report(wp_small, text, result, labels, dictionary=d, max_chars=2000)


def test_the_report_colours_the_text_by_the_top_latents_activation(wp_small, d, text, ranked):
    result, _, report = ranked
    data = page_data(report.html)
    top = result.top_units("in_quote", 5)
    assert list(data["units"]) == top and all(u.startswith("l1.c/d.") for u in top)
    want = latent_values(d, wp_small.model, wp_small.vocab.encode(text[:2000]), latents_of(d, top), streams=1)
    for j, uid in enumerate(top):
        got = np.array(data["units"][uid]["values"], np.float32)
        np.testing.assert_allclose(got, want[:, j].astype(np.float32), rtol=2e-3, atol=2e-3)   # float16's precision
        assert data["units"][uid]["max"] == pytest.approx(float(got.max()), rel=1e-3) and got.min() == 0
        assert "tanh" not in data["units"][uid]
    sections = {s["id"]: s for s in report.sections}
    assert sections["ranking"]["title"] == "Latent ranking" and "each latent's activation" in \
        sections["ranking"]["notes"][0]
    assert [row[1] for row in sections["ranking"]["features"][0]["rows"][:5]] == top
    assert sections["units"]["latents"] and sections["units"]["title"] == "Text coloured by latent"
    assert [o["id"] for o in sections["units"]["panels"][0]["options"]] == top
    assert sections["gates"]["notes"][0].startswith("A dictionary's latents have no gates")
    assert "Latents of the dictionary" in report.subtitle[-1] and "256 latents, 8 on per character" in report.subtitle[-1]
    assert "off 0" in report.html and "the latent's largest on the excerpt" in report.html


def test_the_latent_distribution_is_drawn_where_the_latent_is_on(wp_small, d, text, ranked):
    result, labels, report = ranked
    spec = report.charts["dist0"].to_dict()
    values = {uid: np.array(v["values"], np.float32) for uid, v in page_data(report.html)["units"].items()}
    rows = spec["data"]["values"] if "values" in spec["data"] else list(spec["datasets"].values())[0]
    first = result.top_units("in_quote", 1)[0]
    lab = labels["in_quote"][:2000]
    v = values[first]
    mine = [r for r in rows if r["unit"].startswith(first + ":")]
    inside = [r for r in mine if r["group"].startswith("inside")]
    assert sum(r["fraction"] for r in inside) == pytest.approx(float((v[lab == 1] > 0).mean()))
    assert mine[0]["unit"] == f"{first}: on {(v[lab == 1] > 0).mean():.0%} inside, {(v[lab == 0] > 0).mean():.0%} outside"
    assert spec["resolve"]["scale"] == {"x": "independent", "y": "independent"}


def test_without_a_ranking_the_most_variable_latents_are_shown_with_or_without_a_variance_pass(
        wp_small, d, text, monkeypatch, recurrence_steps):
    kept = build_report(wp_small, text, dictionary=d, max_chars=1000, n_units=4)
    ids = wp_small.vocab.encode(text[:1000])
    z = exact_latents(d, wp_small.model, ids)
    want = [Latent(d.quantity, int(j)).id for j in np.argsort(-z.var(0), kind="stable")[:4]]
    assert list(page_data(kept.html)["units"]) == want
    monkeypatch.setattr(excerpt_module, "MAX_KEPT_BYTES", 999 * 4 * 256)      # 999 characters of 256 latents
    steps = recurrence_steps(wp_small.model)
    over = build_report(wp_small, text, dictionary=d, max_chars=1000, n_units=4, attribute=0)
    assert steps.steps == 2 * 1000                                          # the variance pass, then the one pass
    assert list(page_data(over.html)["units"]) == want


def test_a_live_page_with_latents_says_it_runs_units_only(wp_small, d, text):
    report = build_report(wp_small, text, units=["l1.c/d.3"], dictionary=d, max_chars=500, live=True)
    live = next(s for s in report.sections if s["id"] == "live")
    assert live["notes"][0].startswith("The page runs the model only, not the dictionary")
    assert [o["id"] for o in live["options"]] == ["l0.h.0"]
    assert list(page_data(report.html)["units"]) == ["l1.c/d.3"]


def test_the_report_refuses_what_does_not_fit_its_dictionary(wp_small, reference, d, text, ranked):
    result, labels, _ = ranked
    units_result = probe(wp_small, text, labels, sparse=False, null=False, control=False, streams=1)
    with pytest.raises(UserError, match=r"ranks l\d\.[hc]\.\d+, not latents of the dictionary given \(l1\.c/d\.N\)"):
        build_report(wp_small, text, units_result, labels, dictionary=d)
    with pytest.raises(UserError, match=r"ranks latents \(l1\.c/d\.\d+\); give its dictionary too"):
        build_report(wp_small, text, result, labels)
    with pytest.raises(UserError, match="bad latent 'l1.c.3'"):
        build_report(wp_small, text, units=["l1.c.3"], dictionary=d)
    with pytest.raises(UserError, match="trained on another model"):
        build_report(reference("wp_lstm3x512"), text, dictionary=d)


def test_the_report_and_probe_commands_write_a_latent_page(wp_small, shared_models, shared_data, d, span, tmp_path):
    ckpt, txt = shared_models / "wp_lstm2x128.pt", shared_data / "warpeace.txt"
    where = ["--ckpt", ckpt, "--text", txt, "--split", "test", "--chars", CHARS]
    out = tmp_path / "r.html"
    j, (a, b) = span
    res = run("report", *where, "--feature", "in_quote", "--dictionary", d.path, "--no-null", "--max-chars", 1500,
              "--match-span", f"{a}:{b}", "--out", out)
    assert res.exit_code == 0, res.output
    page = out.read_text(encoding="utf-8")
    data = page_data(page)
    assert data["units"] and all(u.startswith("l1.c/d.") for u in data["units"])
    want = latent_values(d, wp_small.model, wp_small.vocab.encode(data["text"]), latents_of(d, list(data["units"])),
                         streams=1)
    got = np.array([u["values"] for u in data["units"].values()], np.float32).T
    np.testing.assert_allclose(got, want.astype(np.float32), rtol=2e-3, atol=2e-3)
    assert "Latent ranking" in page and f"Query latents: l1.c/d.{j} (100% in, 0% around)" in page
    probed = tmp_path / "p.html"
    res = run("probe", *where, "--feature", "in_quote", "--dictionary", d.path, "--no-sparse", "--no-null",
              "--no-control", "--report", probed)
    assert res.exit_code == 0, res.output
    ranking = json.loads(run("probe", *where, "--feature", "in_quote", "--dictionary", d.path, "--no-sparse",
                             "--no-null", "--no-control", "--json").stdout)
    assert list(page_data(probed.read_text(encoding="utf-8"))["units"]) == [u["unit_id"] for u in ranking["units"][:5]]
    other = ["--ckpt", shared_models / "wp_lstm3x512.pt", *where[2:], "--dictionary", d.path]
    one_line_error(run("report", *other, "--out", tmp_path / "x.html"), "trained on another model")
    one_line_error(run("probe", *other, "--feature", "in_quote", "--report", tmp_path / "y.html"),
                   "trained on another model")
    assert not (tmp_path / "x.html").exists() and not (tmp_path / "y.html").exists()


def test_a_latent_report_renders_in_chromium(browser, wp_small, d, text, ranked, tmp_path):  # noqa: F811
    from selenium.webdriver.support.ui import Select, WebDriverWait
    _, _, report = ranked
    path = tmp_path / "latents.html"
    report.save(path)
    browser.get(path.resolve().as_uri())
    WebDriverWait(browser, 60).until(lambda b: b.execute_script("return window.neuroscopeReady === true"))
    WebDriverWait(browser, 60).until(lambda b: b.execute_script(
        "return Array.from(document.querySelectorAll('.chart')).every(c => c.querySelector('svg, canvas'))"))
    pick = Select(browser.find_element("id", "pick-p0"))
    second = pick.options[1].get_attribute("value")
    pick.select_by_value(second)
    unit = report.data["units"][second]
    on = [k for k, v in enumerate(unit["values"]) if v > 0][:3]
    got = browser.execute_script("""
        const s = document.querySelectorAll('.textview[data-panel="p0"] span.ch');
        return arguments[0].map(k => [s[k].style.backgroundColor, s[k].title]);""", [0] + on)
    for k, (bg, title) in zip([0] + on, got):
        assert bg == expected_colour(unit["values"][k] / unit["max"])           # white 0 .. green at its largest
        assert title.startswith(f"{second} = ")
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []


def test_a_latent_silent_where_formulas_are_chosen_is_listed_not_fatal(warpeace):
    """A sparse latent can be 0 on every fitting block and on in a held-out one: the report's explanations
    list it as having nothing to explain instead of failing the page (found on enwiki's dictionary)."""
    from neuroscope.names import Unit
    from neuroscope.report._sections import explain_section
    text = warpeace[100_000:103_000]                          # 12 blocks of 250; the 3rd, 6th, ... held out
    quiet = np.zeros(len(text), np.float32)
    quiet[500:750] = 1.0                                       # on only in the first held-out block
    unit = np.tanh(np.random.default_rng(0).normal(size=len(text))).astype(np.float32)
    latent = Latent("rnn.l1.c", 5)
    section, _ = explain_section([Unit(0, "h", 0), latent], {"l0.h.0": unit, latent.id: quiet}, text)
    assert f"<td>{latent.id}</td><td colspan=\"6\">constant on the fitting part of this text" in section["html"]
    assert "<td>l0.h.0</td>" in section["html"]
