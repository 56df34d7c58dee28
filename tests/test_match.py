"""neuroscope.match: the search core on planted patterns, a [[wiki link]] match on the reference
enwiki model, the command line, and bad spans, units and thresholds."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
from click.testing import CliRunner

from neuroscope.cli import cli
from neuroscope.errors import UserError
from neuroscope.match import feature_overlap, find_hits, match, parse_span, parse_units

pytestmark = pytest.mark.usefixtures("one_thread")


def test_find_hits_recovers_planted_runs_with_their_jaccard():
    K = 4
    count = np.zeros(1000, np.uint8)
    count[100:110] = 4                      # J = 1.0
    count[200:205] = 3                      # J = 0.75
    count[300:303] = 2                      # J = 0.5: below the cut
    count[400:410] = [4, 4, 3, 3, 3, 3, 3, 3, 4, 4]  # mean J = 34 / 40
    count[500:520] = 4                      # overlaps the span: excluded
    count[600:601] = 4                      # shorter than min_length
    hits = find_hits(count, K, span=(510, 530), cut=0.6, min_length=2)
    assert hits[["start", "end"]].values.tolist() == [[100, 110], [400, 410], [200, 205]]
    assert hits["score"].tolist() == pytest.approx([1.0, 0.85, 0.75])


def test_find_hits_breaks_ties_by_length_closeness_to_the_span():
    count = np.zeros(300, np.uint8)
    count[10:40] = 2                        # 30 long
    count[100:120] = 2                      # 20 long: closest to the span's 18
    count[200:202] = 2
    hits = find_hits(count, 2, span=(250, 268), cut=1.0, min_length=1)
    assert hits["start"].tolist() == [100, 10, 200]
    assert (hits["score"] == 1.0).all()


def test_feature_overlap_scores_hit_characters_against_in_wikilink():
    text = "ab [[cd]] ef [[gh]] ij " * 3                  # in_wikilink: on from the second [ to the first ]
    hits = find_hits(np.array([1 if c in "cdgh" else 0 for c in text], np.uint8), 1, (0, 1), 1.0, 1)
    table = feature_overlap(text, hits, top=2).set_index(["feature", "scope"])
    assert table.loc[("in_wikilink", "all"), "precision"] == 1.0
    assert table.loc[("in_wikilink", "all"), "recall"] == 0.5      # "cd" of the 4 on in "[[cd]]": "[cd]"
    assert table.loc[("in_wikilink", "top"), "hit_chars"] == 4


@pytest.mark.parametrize("span, message", [("12-40", "START:END"), ("40:12", "non-empty"), ("0:5000", "inside"),
                                           ("0:2500", "at most")])
def test_bad_spans_are_one_line_errors(span, message):
    with pytest.raises(UserError, match=message) as err:
        parse_span(span, 3000, max_span=2000)
    assert err.value.param == "span"


def test_units_are_parsed_with_their_sign_and_checked(wp_small):
    assert [(u.id, s) for u, s in parse_units("l1.c.3,-l0.h.7", wp_small.config)] == [("l1.c.3", 1), ("l0.h.7", -1)]
    with pytest.raises(UserError, match="does not exist"):
        parse_units("l1.c.999", wp_small.config)
    with pytest.raises(UserError, match="twice"):
        parse_units("l1.c.3,l1.c.3", wp_small.config)


@pytest.fixture(scope="module")
def enwiki_match(reference, shared_data):
    """match from a [[...]] span over the first 30,000 characters of enwiki's test split."""
    from neuroscope.checkpoint import choose_text
    ckpt = reference("enwiki_lstm2x512")
    text = choose_text(ckpt, str(shared_data / "enwiki.xml"), "test").text[:30_000]
    m = re.search(r"\[\[[^\]|]{8,30}\]\]", text[1000:])
    span = (1000 + m.start(), 1000 + m.end())
    return text, span, match(ckpt, text, span, streams=16, warmup=128, threshold_chars=15_000)


def test_match_from_a_wikilink_finds_wikilinks(enwiki_match):
    text, (a, b), result = enwiki_match
    assert len(result.query) == 10 and (result.query["on_inside"] >= 0.5).all()
    assert result.meta["hits"] >= 20
    hits = result.hits
    assert not ((hits["start"] < b) & (hits["end"] > a)).any()            # the span itself is excluded
    assert all(text[s:e] == t for s, e, t in zip(hits["start"], hits["end"], hits["text"]))
    f = result.features.set_index(["feature", "scope"])
    assert f.loc[("in_wikilink", "top"), "precision"] >= 0.9
    assert f.loc[("in_wikilink", "top"), "lift"] >= 5
    assert f.loc[("in_quote", "top"), "precision"] <= 0.1


@pytest.mark.parametrize("units", ["auto", "l1.c.3,-l0.h.7"])
def test_a_span_where_no_unit_is_on_is_refused(wp_small, units):
    # After a few "a"s every unit settles on one value, which never passes its own quantile.
    with pytest.raises(UserError, match="no unit is on inside span") as err:
        match(wp_small, "a" * 3000, (2000, 2010), units=units)
    assert err.value.param == "span"


def test_cli_match_json(wp_small, shared_models, shared_data, tmp_path):
    out = tmp_path / "hits.csv"
    res = CliRunner().invoke(cli, ["match", "--ckpt", str(shared_models / "wp_lstm2x128.pt"), "--text",
                                   str(shared_data / "warpeace.txt"), "--split", "test", "--chars", "20000",
                                   "--span", "843:881",
                                   "--units", "auto", "--top", "5", "--streams", "8", "--warmup", "64", "--json",
                                   "--csv", str(out)])
    assert res.exit_code == 0, res.output
    got = json.loads(res.output)
    assert set(got) == {"source", "start", "end", "query", "hits", "features", "meta"}
    assert got["meta"]["span"] == [843, 881] and got["meta"]["span_text"].startswith('"Even wormwood')
    assert 1 <= len(got["hits"]) <= 5 and set(got["hits"][0]) >= {"rank", "start", "end", "score", "text"}
    assert {r["feature"] for r in got["features"]} >= {"in_quote", "in_wikilink"}
    assert out.read_text().startswith("rank,start,end,length,score")


def test_cli_match_bad_threshold_names_the_flag(shared_models, shared_data):
    res = CliRunner().invoke(cli, ["match", "--ckpt", str(shared_models / "wp_lstm2x128.pt"), "--text",
                                   str(shared_data / "warpeace.txt"), "--chars", "2000", "--span", "10:20",
                                   "--threshold", "1.5"])
    assert res.exit_code == 1 and "--threshold must lie in (0, 1)" in res.output


def test_match_section_marks_the_hits_escaped(enwiki_match):
    from neuroscope.report._sections import match_section
    text, _, result = enwiki_match
    section, charts = match_section(result, number_of_hits=5)
    first = result.hits.iloc[0]
    assert section["kind"] == "html" and charts == {}
    assert f"<mark>{first['text']}</mark>" in section["html"].replace("&amp;", "&").replace("&#x27;", "'")
    assert "<td>in_wikilink</td><td>1.00</td>" in section["html"]
    assert section["html"].count("<mark>") == 6                      # the span and 5 hits


def test_report_with_a_match_section(shared_models, shared_data, tmp_path):
    out = tmp_path / "r.html"
    res = CliRunner().invoke(cli, ["report", "--ckpt", str(shared_models / "wp_lstm2x128.pt"), "--text",
                                   str(shared_data / "warpeace.txt"), "--split", "test", "--chars", "4000",
                                   "--match-span", "843:881", "--out", str(out)])
    assert res.exit_code == 0, res.output
    page = out.read_text()
    assert "Match" in page and "Even wormwood grows on its own root." in page and page.count("<mark>") >= 2
