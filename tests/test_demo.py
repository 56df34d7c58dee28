"""`neuroscope demo`: the whole path (stdlib source -> trained LSTM -> labels -> ranking -> report),
run here with 30 training steps instead of DEMO_STEPS and a shorter text."""
import json
import re

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from neuroscope.cli import cli
from neuroscope.features import label
from neuroscope.report._demo import DEMO_FEATURES, run_demo

pytestmark = pytest.mark.usefixtures("one_thread")
SECTIONS = ["model", "samples", "ranking", "units", "explanations", "predictions", "live", "distribution", "gates", "attribution"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "run"
    lines = []
    result = run_demo(out, steps=30, corpus_chars=300_000, probe_chars=3000, max_chars=1500,
                      progress=False, log=lines.append)
    return result, lines


def test_demo_writes_model_ranking_and_report(demo):
    result, lines = demo
    assert [ln[:5] for ln in lines if ln.startswith("[")] == ["[1/4]", "[2/4]", "[3/4]", "[4/4]"]
    html = open(result.report, encoding="utf-8").read()
    assert re.findall(r'<section id="([a-z]+)">', html) == SECTIONS
    assert np.isfinite(result.test_loss_nats) and 0 < result.test_loss_nats < 6
    assert "for 30 steps" in lines[0] and "after 30 steps" in lines[1]


def test_demo_ranking_numbers_are_finite(demo):
    result, _ = demo
    ranking = pd.read_csv(result.ranking)
    assert set(ranking["feature"]) == set(DEMO_FEATURES)
    assert len(ranking) == len(DEMO_FEATURES) * 2 * 2 * 128          # 2 layers x (h, c) x 128 units
    top = ranking.groupby("feature").head(10)
    assert np.isfinite(top[["r", "abs_r", "p_value"]].to_numpy()).all()
    assert (ranking["abs_r"].dropna() <= 1 + 1e-6).all()
    for f, (unit, r) in result.top.items():
        best = ranking[ranking["feature"] == f].iloc[0]
        assert unit == best["unit_id"] and r == pytest.approx(best["r"]) and np.isfinite(r)


def test_demo_report_shows_the_excerpt_labels_and_top_units(demo):
    result, _ = demo
    html = open(result.report, encoding="utf-8").read()
    data = json.loads(re.search(r'<script type="application/json" id="ns-data">(.*?)</script>', html, re.S).group(1))
    text = data["text"]
    assert len(text) == 1500
    for f in DEMO_FEATURES:
        assert data["labels"][f] == label(text, f).astype(int).tolist()
    ranking = pd.read_csv(result.ranking)
    best = ranking[ranking["feature"] == "in_string"]["unit_id"].iloc[0]
    assert best in data["units"] and len(data["units"][best]["values"]) == 1500


def test_demo_report_is_live_and_the_model_adds_under_a_megabyte(demo):
    from neuroscope.report._live import LIVE_JS
    result, _ = demo
    html = open(result.report, encoding="utf-8").read()
    live = json.loads(re.search(r'<script type="application/json" id="ns-data">(.*?)</script>', html, re.S).group(1))["live"]
    assert (live["cell"], live["layers"], live["hidden"]) == ("lstm", 2, 128)
    assert len(live["weights"]) + len(LIVE_JS) <= 1_000_000
    assert live["rounded"] > 0 and "rounded to float16" in html          # the demo trains in float32


def test_demo_command_rejects_bad_options(tmp_path):
    afile = tmp_path / "file.txt"
    afile.write_text("not a folder")
    res = CliRunner().invoke(cli, ["demo", "--out", str(afile)])
    assert res.exit_code == 1 and res.output.startswith("Error:") and "folder" in res.output
    assert afile.read_text() == "not a folder"
    res = CliRunner().invoke(cli, ["demo", "--out", str(tmp_path / "d"), "--steps", "0"])
    assert res.exit_code == 1 and res.output.startswith("Error: --steps must be >= 1")
    assert not (tmp_path / "d").exists()


def test_demo_replaces_an_earlier_demo_only_with_force(tmp_path):
    (tmp_path / "model.pt").write_bytes(b"PK\x03\x04 an earlier demo's model")
    res = CliRunner().invoke(cli, ["demo", "--out", str(tmp_path), "--steps", "1"])
    assert res.exit_code == 1 and res.output.startswith("Error:") and "set --force to replace it" in res.output
    assert len(res.output.strip().splitlines()) == 1
    assert (tmp_path / "model.pt").read_bytes() == b"PK\x03\x04 an earlier demo's model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]
