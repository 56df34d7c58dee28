"""How many times each analysis reads its text through the recurrence: one pass where one pass does.

Counted on the real small War and Peace model (wp_lstm2x128) by the conftest's recurrence_steps, which
sums the time steps of every call of model.rnn: one pass over n characters is n steps, in one stream
or in a batch of rows that read the same characters side by side.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from neuroscope.checkpoint import save_checkpoint
from neuroscope.cli import cli
from neuroscope.explain import explain
from neuroscope.features import label
from neuroscope.names import parse_unit
from neuroscope.probe import ProbeConfig
from neuroscope.probe._ablation import ablation
from neuroscope.record import Intervention, char_losses, most_variable_units, shown_values, stream_layout, zeroed_losses

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def text(warpeace):
    return warpeace[2_950_000:2_956_000]          # test split, with dialogue


def test_explain_top_units_reads_the_text_once_and_picks_what_the_variance_pass_picks(wp_small, text,
                                                                                    recurrence_steps):
    ids = wp_small.vocab.encode(text)
    expected = [u.id for u in most_variable_units(wp_small.model, ids, 6)]
    steps = recurrence_steps(wp_small.model)
    res = explain(wp_small, text, top_units=6, streams=1, contexts=False)
    assert steps.steps == len(text) and steps.calls >= 1                # one exact pass
    assert list(dict.fromkeys(res.table["unit"])) == expected


def test_explain_in_pieces_is_one_pass_of_pieces_plus_their_warmup(wp_small, warpeace, recurrence_steps):
    text = warpeace[2_950_000:2_990_000]                               # 40,000 chars: auto reads 39 pieces
    steps = recurrence_steps(wp_small.model)
    res = explain(wp_small, text, top_units=3, contexts=False)
    B, m, W = stream_layout(len(text), "auto", 256)
    assert (B, res.meta["streams"], res.meta["warmup"]) == (39, 39, 256)
    assert steps.steps == m + W and steps.rows == B * (m + W)


def test_explain_values_are_the_named_units_shown_values(wp_small, text):
    ids = wp_small.vocab.encode(text)
    units = [parse_unit(u, wp_small.config) for u in ("l1.c.5", "l0.h.7")]
    values, var = shown_values(wp_small.model, ids, units, variance=True)
    with torch.no_grad():
        _, (h, c) = wp_small.model(torch.as_tensor(ids)[None])         # the fused forward's last state
    assert abs(float(values[-1, 0]) - float(torch.tanh(c[1, 0, 5]))) < 1e-3          # float16
    assert abs(float(values[-1, 1]) - float(h[0, 0, 7])) < 1e-3
    assert np.allclose(var, values.astype(np.float64).var(0), atol=1e-4)


def test_zeroed_losses_rows_equal_one_intervention_run_each(wp_small, text):
    ids = wp_small.vocab.encode(text[:1500])
    sets = [{"rnn.l1.c": [3, 9]}, {"rnn.l0.h": [1], "rnn.l1.c": [50]}, {}]
    batched = zeroed_losses(wp_small.model, ids, sets)
    assert batched.shape == (3, len(ids) - 1)
    for row, units in zip(batched, sets):
        one = char_losses(wp_small.model, ids, [Intervention(q, tuple(us)) for q, us in units.items()])
        assert np.abs(row - one).max() < 1e-4
    assert np.abs(batched[2] - char_losses(wp_small.model, ids)).max() < 1e-4   # nothing zeroed: the model


def test_ablation_is_one_batched_pass_per_feature_plus_the_baseline(wp_small, text, recurrence_steps):
    ids = wp_small.vocab.encode(text)
    feats = {"in_quote": label(text, "in_quote"), "line_position": label(text, "line_position")}
    ranking = _ranking(wp_small, feats)
    cfg = ProbeConfig(ablate=3, ablate_chars=4000, ablate_draws=20)
    steps = recurrence_steps(wp_small.model)
    table, _ = ablation(wp_small.model, ids, feats, ranking, cfg)
    assert len(table) == 2 and (table["draws"] == 20).all()
    assert steps.steps == 3 * (4000 - 1)                                  # baseline + one pass per feature
    assert steps.rows == (4000 - 1) * (1 + 2 * 21)


def test_cli_explain_top_units_reads_once(wp_small, text, tmp_path):
    ckpt = tmp_path / "m.pt"
    save_checkpoint(ckpt, wp_small)
    src = tmp_path / "t.txt"
    src.write_text(text)
    counted = _GlobalSteps()
    with counted:
        out = CliRunner().invoke(cli, ["explain", "--ckpt", str(ckpt), "--text", str(src), "--split", "all",
                                       "--top-units", "4", "--json"])
    assert out.exit_code == 0, out.output
    assert counted.steps == len(text)                                    # 6,000 chars: auto is one exact stream


def _ranking(ckpt, feats):
    """A ranking frame with each feature's top units (the first rows ablation zeroes), made by hand."""
    import pandas as pd
    rows = [(f, 1, "c", u, f"l1.c.{u}") for f in feats for u in (4, 8, 15)]
    return pd.DataFrame(rows, columns=["feature", "layer", "state", "unit", "unit_id"])


class _GlobalSteps:
    """Time steps of every nn.LSTM call in the process (a command builds its own model from the file)."""

    def __enter__(self):
        self.steps = 0
        self._h = torch.nn.modules.module.register_module_forward_pre_hook(self._count)
        return self

    def _count(self, module, args):
        if isinstance(module, torch.nn.LSTM):
            self.steps += args[0].shape[1] if args[0].dim() == 3 else args[0].shape[0]

    def __exit__(self, *exc):
        self._h.remove()
