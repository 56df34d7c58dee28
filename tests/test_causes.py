"""neuroscope.causes: patching between two inputs, and interchange interventions for a feature."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from neuroscope.cli import cli
from neuroscope.dictionary import Dictionary, TopKSAE, model_fingerprint
from neuroscope.errors import UserError
from neuroscope.features import label
from neuroscope.hooks import Trace
from neuroscope.model import CharRNN
from neuroscope.names import parse_unit
from neuroscope.config import ModelConfig
from neuroscope.causes import Behaviour, attribute, interchange, pairs, patch, patch_edits, source_plan, target
from neuroscope.text import Vocab

pytestmark = pytest.mark.usefixtures("one_thread")

A = 'Pierre said, "I shall not'
B = "Pierre said to me I shall"         # the same length as A, without the quote
TAIL = ' go to the ball tonight," and he went out.'


def probs(ckpt, text: str) -> np.ndarray:
    """The model's own (fused) next-character distributions over text: [len(text), V]."""
    with torch.no_grad():
        logits, _ = ckpt.model(torch.as_tensor(ckpt.vocab.encode(text))[None])
    return torch.softmax(logits[0].double(), -1).numpy()


def test_patching_every_state_reproduces_the_source_from_that_step_on(wp_small):
    assert len(A) == len(B)
    base, source, t = A + TAIL, B + TAIL, len(A) - 1
    r = patch(wp_small, base, source, at=t)
    p_src, p_base = probs(wp_small, source), probs(wp_small, base)
    ids = wp_small.vocab.encode(base)
    steps = r.steps.dropna(subset=["loss_clean"])
    want = p_src[steps["position"], ids[steps["position"] + 1]]
    np.testing.assert_allclose(steps["p_patched"], want, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(steps["p_clean"], p_base[steps["position"], ids[steps["position"] + 1]],
                               rtol=1e-4, atol=1e-6)
    assert r.steps["position"].iloc[0] == t and len(r.steps) == len(base) - t
    assert float(np.abs(p_src[t:] - p_base[t:]).max()) > 0.05           # the two texts do predict differently
    top = "".join(wp_small.vocab.chars[i] for i in np.argsort(-p_src[t])[:5])
    assert r.steps["top_patched"].iloc[0] == top


def test_a_patch_from_the_base_itself_or_of_nothing_that_differs_changes_nothing(wp_small):
    r = patch(wp_small, A + TAIL, A + TAIL, at=[3, len(A) - 1])
    assert r.steps["kl"].max() < 1e-6
    np.testing.assert_allclose(r.steps["p_patched"].dropna(), r.steps["p_clean"].dropna(), rtol=1e-5)
    s = r.summary()
    assert s["top1_changed"] == 0 and s["loss_patched"] == pytest.approx(s["loss_clean"], rel=1e-5)


def test_a_unit_patch_puts_the_source_value_in_and_changes_only_later_steps(wp_small):
    base, source, t = A + TAIL, B + TAIL, len(A) - 1
    tgt = target(["l1.c.5", "l0.h.7"], wp_small.model.config)
    plan = dict(zip([t], source_plan(wp_small.model, wp_small.vocab.encode(source), tgt, [t])))
    x = torch.as_tensor(wp_small.vocab.encode(base))[None].expand(2, -1)
    with torch.no_grad(), Trace(wp_small.model, names=["rnn.l1.c", "rnn.l0.h"], edit=patch_edits(tgt, plan, [1])) as tr:
        wp_small.model(x)
    with torch.no_grad(), Trace(wp_small.model, names=["rnn.l1.c", "rnn.l0.h"]) as src:
        wp_small.model(torch.as_tensor(wp_small.vocab.encode(source))[None])
    assert tr["rnn.l1.c"][1, t, 5] == pytest.approx(float(src["rnn.l1.c"][0, t, 5]), abs=1e-5)
    assert tr["rnn.l0.h"][1, t, 7] == pytest.approx(float(src["rnn.l0.h"][0, t, 7]), abs=1e-5)
    assert torch.equal(tr["rnn.l1.c"][1, :t], tr["rnn.l1.c"][0, :t])            # nothing before the step
    assert float((tr["rnn.l1.c"][1, t + 1:] - tr["rnn.l1.c"][0, t + 1:]).abs().max()) > 1e-4   # after it


def test_free_running_after_a_full_patch_continues_as_the_source_would(wp_small):
    C = "The old prince looked at "
    r = patch(wp_small, A, C, at=len(A) - 1, source_at=len(C) - 1, free=40, temperature=0)
    v = wp_small.vocab
    assert r.continuation["patched"] == wp_small.model.sample(v, 40, temperature=0, prime=C)[len(C):]
    assert r.continuation["clean"] == wp_small.model.sample(v, 40, temperature=0, prime=A)[len(A):]
    assert r.continuation["patched"] != r.continuation["clean"]
    assert len(r.steps) == 41 and r.steps["next"].iloc[:40].str.cat() == r.continuation["patched"]


def test_free_sampling_is_coupled_and_repeatable(wp_small):
    one = patch(wp_small, A, A, at=4, free=60, temperature=1.0, seed=3)
    assert one.continuation["clean"] == one.continuation["patched"]       # the same distributions: the same draws
    two = patch(wp_small, A, B, at=len(A) - 1, free=60, temperature=1.0, seed=3)
    assert two.continuation == patch(wp_small, A, B, at=len(A) - 1, free=60, temperature=1.0, seed=3).continuation


def test_a_latent_patch_moves_the_shown_value_by_the_activation_difference(wp_small):
    """A dictionary that reconstructs exactly (latents +x and -x): patching all its latents puts the
    source's tanh(c) where h reads it, so h_t = o_t(base) * tanh(c_t(source))."""
    H = wp_small.model.config.hidden_size
    sae = TopKSAE(H, 2 * H, H)
    eye = torch.eye(H)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([eye, -eye], 1)), sae.W_dec.copy_(torch.cat([eye, -eye], 0))
        sae.b_enc.zero_(), sae.b_dec.zero_()
    d = Dictionary(sae, "rnn.l1.c", model_fingerprint(wp_small.model))
    base, source, t = A + TAIL, B + TAIL, len(A) - 1
    tgt = target([f"l1.c/d.{i}" for i in range(2 * H)], wp_small.model.config, d)
    plan = dict(zip([t], source_plan(wp_small.model, wp_small.vocab.encode(source), tgt, [t])))
    x = torch.as_tensor(wp_small.vocab.encode(base))[None].expand(2, -1)
    names = ["rnn.l1.h", "rnn.l1.c", "rnn.l1.gate_o"]
    with torch.no_grad(), Trace(wp_small.model, names=names, edit=patch_edits(tgt, plan, [1])) as tr:
        wp_small.model(x)
    with torch.no_grad(), Trace(wp_small.model, names=["rnn.l1.c"]) as src:
        wp_small.model(torch.as_tensor(wp_small.vocab.encode(source))[None])
    want = tr["rnn.l1.gate_o"][1, t] * torch.tanh(src["rnn.l1.c"][0, t])
    torch.testing.assert_close(tr["rnn.l1.h"][1, t], want, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(tr["rnn.l1.c"][1, t], tr["rnn.l1.c"][0, t])            # the memory stays the base's


@pytest.mark.parametrize("kwargs, message", [
    ({"at": 99}, "outside the base"),
    ({"at": 20, "source_at": [30]}, "outside the source"),
    ({"at": [3, 4], "source_at": [3]}, "one source step per"),
    ({"at": 3, "what": "l7.c"}, "cannot patch"),
    ({"at": 3, "what": ["l1.c.500"]}, "does not exist"),
    ({"at": 3, "what": ["l1.gate_f.3"]}, "not a gate"),
    ({"at": 3, "what": ["l1.c/d.3"]}, "need the dictionary"),
    ({"at": 3, "free": 10**9}, "free must be"),
    ({"at": 3, "temperature": float("nan")}, "temperature"),
    ({"at": [3, 3]}, "twice"),
    ({"at": 2.5}, "whole-number"),
])
def test_bad_patches_are_refused_in_one_line(wp_small, kwargs, message):
    with pytest.raises(UserError, match=message) as e:
        patch(wp_small, A, B, **kwargs)
    assert "\n" not in str(e.value)


def test_texts_of_another_vocabulary_and_states_of_another_cell_are_refused(wp_small):
    with pytest.raises(UserError, match="vocabulary lacks"):
        patch(wp_small, A, "Пьер сказал", at=1)
    vocab = Vocab(sorted(set(A + B)))
    gru = CharRNN(ModelConfig(len(vocab), "gru", hidden_size=8, num_layers=2))
    with pytest.raises(UserError, match="cannot patch 'l1.c'"):
        patch(gru, A, B, at=3, what="l1.c", vocab=vocab)
    r = patch(gru, A, B, at=3, vocab=vocab)                 # every state of a GRU: its h
    assert r.size == 16


# ------------------------------------------------------------------ interchange interventions

QUOTE = Behaviour("in_quote", base=lambda y: y == 1, source=lambda y: y == 0, chars='"', window=60, horizon=10)


@pytest.fixture(scope="module")
def quote_pairs(warpeace):
    text = warpeace[-60_000:]
    return text, pairs(text, label(text, "in_quote"), QUOTE, n=40, seed=1)


def test_pairs_end_on_the_two_values_and_share_the_base_continuation(quote_pairs):
    text, ps = quote_pairs
    assert len(ps) == 40 and all(len(b) == len(s) == 70 for b, s in ps)
    y = label(text, "in_quote")
    for b, s in ps:
        assert b[-10:] == s[-10:]
        i, j = text.find(b), text.find(s[:60])                  # where each window was cut from
        assert i >= 0 and j >= 0 and y[i + 59] == 1 and y[j + 59] == 0


def test_patching_every_state_follows_the_source_on_every_pair(wp_small, quote_pairs):
    _, ps = quote_pairs
    r = interchange(wp_small, ps, QUOTE, {"every state": "all", "layer 1": "l1", "one unit": ["l1.c.5"]},
                    random_draws=5)
    t = r.table.set_index("set")
    assert r.pairs > 10
    assert t.loc["every state", "accuracy"] == 1.0 and t.loc["every state", "effect"] == pytest.approx(1.0, abs=1e-4)
    assert t.loc["layer 1", "units"] == 256 and t.loc["one unit", "units"] == 1
    assert t.loc["one unit: random", "low"] <= t.loc["one unit: random", "accuracy"] <= t.loc["one unit: random", "high"]
    assert np.isnan(t.loc["layer 1", "low"])


def test_interchange_input_is_checked(wp_small, quote_pairs, warpeace):
    _, ps = quote_pairs
    with pytest.raises(UserError, match="bad layer"):
        interchange(wp_small, ps, QUOTE, {"x": "l9"})
    with pytest.raises(UserError, match="window \\+ horizon = 70"):
        interchange(wp_small, [(a[:-1], b) for a, b in ps], QUOTE, {"x": "all"})
    with pytest.raises(UserError, match="vocabulary lacks"):
        interchange(wp_small, [("Ж" + a[1:], b) for a, b in ps], QUOTE, {"x": "all"})
    with pytest.raises(UserError, match="base and .* source positions"):
        pairs(warpeace[:300], label(warpeace[:300], "in_quote"), QUOTE, n=40)
    with pytest.raises(UserError, match="pairs must be"):
        pairs(warpeace[:300], label(warpeace[:300], "in_quote"), QUOTE, n=0)


# ------------------------------------------------------------------ the command

def test_the_patch_command_prints_json_writes_csv_and_refuses_in_one_line(shared_models, tmp_path):
    ckpt = str(shared_models / "wp_lstm2x128.pt")
    run = CliRunner().invoke
    out = run(cli, ["patch", "--ckpt", ckpt, "--base", A + TAIL, "--source", B + TAIL, "--at", str(len(A) - 1),
                    "--what", "l1.c.5,l1.h.5", "--json", "--top", "3", "--csv", str(tmp_path / "s.csv")])
    assert out.exit_code == 0, out.output
    got = json.loads(out.output)
    assert {"loss_clean", "loss_patched", "kl_mean", "kl_max", "top1_changed", "size", "listed"} <= set(got)
    assert got["size"] == 2 and len(got["listed"]) == 3
    steps = pd.read_csv(tmp_path / "s.csv", keep_default_na=False)
    assert len(steps) == len(TAIL) + 1 and steps["position"].iloc[0] == len(A) - 1
    again = run(cli, ["patch", "--ckpt", ckpt, "--base", A, "--source", B, "--at", "3", "--csv", str(tmp_path / "s.csv")])
    assert again.exit_code == 1 and "exists" in again.output
    for args, words in [(["--at", "99"], "outside the base"), (["--at", "3", "--what", "l5.c"], "cannot patch"),
                        (["--at", "3", "--base-file", str(tmp_path / "none.txt")], "one of them")]:
        bad = run(cli, ["patch", "--ckpt", ckpt, "--base", A, "--source", B, *args])
        assert bad.exit_code == 1 and words in bad.output and len(bad.output.strip().splitlines()) == 1, bad.output


# ------------------------------------------------------------------ attribution through time

QUOTED = 'Natasha looked at him. "I know all that, and I will not say it again, never," she said.'


def unit_value(ckpt, text: str, layer: int, state: str, index: int) -> float:
    """The shown value after the text's last character, from one independent forward."""
    with torch.no_grad():
        _, (h, c) = ckpt.model(torch.as_tensor(ckpt.vocab.encode(text))[None])
    v = (c if state == "c" else h)[layer, 0, index]
    return float(torch.tanh(v) if state == "c" else v)


def test_occlusion_is_exactly_the_change_when_one_character_is_replaced(wp_small):
    at = len(QUOTED) - 12
    a = attribute(wp_small, QUOTED, "l1.c.5", at, window=30, methods="occlusion")
    assert a.value == pytest.approx(unit_value(wp_small, QUOTED[:at + 1], 1, "c", 5), abs=1e-5)
    assert list(a.table["position"]) == list(range(at - 30, at + 1)) and list(a.table["offset"])[-1] == 0
    for i in (at - 30, at - 17, at - 1, at):
        swapped = QUOTED[:i] + " " + QUOTED[i + 1:at + 1]
        want = a.value - unit_value(wp_small, swapped, 1, "c", 5)
        got = float(a.table.set_index("position").loc[i, "occlusion"])
        assert got == pytest.approx(want, abs=2e-5)
    assert a.table["ig"].isna().all() and np.isnan(a.completeness)


@pytest.mark.parametrize("unit, at", [("l1.c.5", 70), ("l0.h.17", 40), ("l1.h.100", 85)])
def test_integrated_gradients_sum_to_the_change_within_one_percent(wp_small, unit, at):
    a = attribute(wp_small, QUOTED, unit, at, window=40, methods="ig")
    u = parse_unit(unit)
    spaces = QUOTED[:at - 40] + " " * 41
    assert a.baseline == pytest.approx(unit_value(wp_small, spaces, u.layer, u.state, u.index), abs=1e-5)
    assert a.completeness < 0.01
    assert float(a.table["ig"].sum()) == pytest.approx(a.value - a.baseline, rel=0.01, abs=1e-6)


def test_the_quote_cell_is_driven_by_the_quote_that_opened_it(reference, warpeace):
    """wp_lstm3x512's quote cell l2.c.323, 30 characters into a quotation: of the 100 characters before,
    replacing the opening quote moves it most, by far."""
    big = reference("wp_lstm3x512")
    start = 2_950_000
    while not (warpeace[start] == '"' and warpeace[start - 1].isspace() and '"' not in warpeace[start + 1:start + 45]):
        start = warpeace.index('"', start + 1)                 # an opening quote whose quotation runs on 44 more
    text = warpeace[start - 200:start + 31]
    a = attribute(big, text, "l2.c.323", len(text) - 1, window=100, methods="occlusion")
    size = np.sort(np.abs(a.table["occlusion"].to_numpy()))[::-1]
    top = a.table.iloc[int(np.argmax(np.abs(a.table["occlusion"])))]
    assert top["char"] == '"' and int(top["offset"]) == -30 and size[0] > 3 * size[1]     # 0.171 against 0.031


def test_bad_attributions_are_refused_in_one_line(wp_small):
    for kwargs, words in [({"at": 999}, "at must be"), ({"window": 0}, "window must be"),
                          ({"unit": "l1.gate_f.3"}, "not the gate"), ({"unit": "l4.c.3"}, "does not exist"),
                          ({"unit": "l1.c/d.3"}, "give the dictionary"), ({"replace": "Ж"}, "replace must be"),
                          ({"methods": ("shap",)}, "methods must be")]:
        args = {"unit": "l1.c.5", "at": 40, **kwargs}
        with pytest.raises(UserError, match=words) as e:
            attribute(wp_small, QUOTED, args.pop("unit"), args.pop("at"), **args)
        assert "\n" not in str(e.value)


def test_the_attribute_command_prints_json_and_writes_a_page(shared_models, shared_data, tmp_path):
    ckpt, text = str(shared_models / "wp_lstm2x128.pt"), str(shared_data / "warpeace.txt")
    run = CliRunner().invoke
    out = run(cli, ["attribute", "--ckpt", ckpt, "--text", text, "--start", "5000", "--chars", "2000", "--unit",
                    "l1.c.5", "--at", "620", "--window", "50", "--json", "--out", str(tmp_path / "a.html")])
    assert out.exit_code == 0, out.output
    got = json.loads(out.output)
    assert got["unit"] == "l1.c.5" and len(got["characters"]) == 51 and got["completeness"] < 0.01
    page = (tmp_path / "a.html").read_text()
    assert "Attribution" in page and page.count("<span title=") == 2 * 51
    again = run(cli, ["attribute", "--ckpt", ckpt, "--text", text, "--unit", "l1.c.5", "--at", "620",
                      "--out", str(tmp_path / "a.html")])
    assert again.exit_code == 1 and "exists" in again.output
    far = run(cli, ["attribute", "--ckpt", ckpt, "--text", text, "--start", "0", "--chars", "100", "--unit", "l1.c.5",
                    "--at", "100"])
    assert far.exit_code == 1 and "outside the selected text" in far.output and len(far.output.strip().splitlines()) == 1


def test_the_report_shows_an_attribution_strip_for_its_top_unit_at_its_largest_value(wp_small, warpeace):
    from neuroscope.report import build_report
    text = warpeace[2_950_000:2_952_000]
    r = build_report(wp_small, text, units=["l1.c.5", "l0.h.3"], max_chars=1500)
    section = next(s for s in r.sections if s["id"] == "attribution")
    v = unit_value  # the value the strip names is the unit's largest on the shown text
    values = [v(wp_small, text[:i + 1], 1, "c", 5) for i in range(1, 1500, 50)]
    assert "l1.c.5" in section["html"] and "l0.h.3" not in section["html"]
    shown = float(section["html"].split("value ")[1].split(",")[0])
    assert shown >= max(values) - 1e-3
    assert section["html"].count("<span title=") == 2 * 101
    assert "attribution" not in [s["id"] for s in build_report(wp_small, text, units=["l1.c.5"], max_chars=1500,
                                                                attribute=0).sections]


def test_occlusion_and_patching_are_batched_passes(wp_small, recurrence_steps):
    """All occlusions of a window in one batched pass after the prefix: at + 1 steps in all; a forced patch
    reads the source up to its step once and the base once, both runs side by side."""
    at, window = 80, 60
    steps = recurrence_steps(wp_small.model)
    attribute(wp_small, QUOTED, "l1.c.5", at, window=window, methods="occlusion")
    assert steps.steps == at + 1 and steps.calls == 2 and steps.rows == (at - window) + (window + 1) * (window + 2)   # the clean row too
    steps = recurrence_steps(wp_small.model)
    patch(wp_small, A + TAIL, B + TAIL, at=len(A) - 1)
    assert steps.steps == len(A) + len(A + TAIL) and steps.rows == len(A) + 2 * len(A + TAIL)


def test_steps_given_out_of_order_keep_their_source_steps(wp_small):
    C = "The old prince looked at "
    one = patch(wp_small, A + TAIL, C + TAIL, at=[20, 5], source_at=[18, 2], what="l1.c")
    two = patch(wp_small, A + TAIL, C + TAIL, at=[5, 20], source_at=[2, 18], what="l1.c")
    assert one.at == [5, 20] and one.source_at == [2, 18] and one.steps.equals(two.steps)
