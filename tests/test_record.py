"""record.py: the iter_states contract, streams/warmup, interventions and char_losses, bad input."""
import numpy as np
import pytest
import torch

from neuroscope.errors import UserError
from neuroscope.model import evaluate
from neuroscope.model import CharRNN, ModelConfig
from neuroscope.record import (Intervention, char_losses, iter_states, parse_states, record, state_names,
                               stream_layout)


pytestmark = pytest.mark.usefixtures("one_thread")      # conftest: one torch thread


@pytest.fixture(scope="module")
def wp_ids(wp_small, warpeace):
    return wp_small.vocab.encode(warpeace[500_000:501_200])


def fused(model, ids):
    """Reference: the model's own nn.LSTM over ids in one call -> (top h [N, H], (h_n, c_n))."""
    with torch.no_grad():
        out, state = model.rnn(model.encoder(torch.as_tensor(ids)[None]))
    return out[0].numpy(), state


def test_rows_are_states_after_each_character_from_a_zero_state(wp_small, wp_ids):
    model = wp_small.model
    starts, acts = [], {}
    for start, a in iter_states(model, wp_ids, states=("h", "c"), chunk=500):
        starts.append((start, len(a["rnn.l0.h"])))
        for k, v in a.items():
            acts.setdefault(k, []).append(v)
    assert starts == [(0, 500), (500, 500), (1000, 200)]                  # in order, no gap, no overlap
    assert sorted(acts) == ["rnn.l0.c", "rnn.l0.h", "rnn.l1.c", "rnn.l1.h"]
    top, (hn, cn) = fused(model, wp_ids)
    h1 = np.concatenate(acts["rnn.l1.h"])
    assert h1.dtype == np.float32 and h1.shape == (1200, 128)
    np.testing.assert_allclose(h1, top, atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.concatenate(acts["rnn.l0.c"])[-1], cn[0, 0].numpy(), atol=1e-5, rtol=1e-5)
    # row 0 is the state after reading ids[0] alone, from zeros
    first, _ = fused(model, wp_ids[:1])
    np.testing.assert_allclose(h1[0], first[0], atol=1e-6)


@pytest.mark.parametrize("strategy", ["loop", "recover"])
def test_chunk_size_and_strategy_do_not_change_states(wp_small, wp_ids, strategy):
    whole = record(wp_small.model, wp_ids, ("h", "c", "gates"), chunk=4096, strategy="loop")
    parts = record(wp_small.model, wp_ids, ("h", "c", "gates"), chunk=37, strategy=strategy)
    assert sorted(parts) == sorted(state_names(wp_small.config, ("h", "c", "gates")))
    for name in whole:
        scale = 1 + np.abs(whole[name])
        assert np.max(np.abs(parts[name] - whole[name]) / scale) < 1e-5, name


def test_streams_with_warmup_back_to_the_start_are_exact(wp_small, wp_ids):
    """Two pieces of 600; the second warms up on all 600 characters before it, from a zero state at
    ids[0]: exactly the single-stream computation, so the states agree to rounding."""
    exact = record(wp_small.model, wp_ids, ("h", "c"))
    two = record(wp_small.model, wp_ids, ("h", "c"), streams=2, warmup=600)
    for name in exact:
        np.testing.assert_allclose(two[name], exact[name], atol=1e-4, rtol=1e-5)


def test_streams_cover_every_character_once_and_warmup_shrinks_the_deviation(wp_small, warpeace):
    ids = wp_small.vocab.encode(warpeace[700_000:702_000])
    exact = record(wp_small.model, ids, ("h",))["rnn.l1.h"]
    seen = np.zeros(len(ids), int)
    for start, a in iter_states(wp_small.model, ids, ("h",), streams=8, warmup=100, chunk=64):
        seen[start:start + len(a["rnn.l1.h"])] += 1
    assert np.all(seen == 1)
    dev = {}
    for w in (0, 100):
        got = record(wp_small.model, ids, ("h",), streams=8, warmup=w)["rnn.l1.h"]
        np.testing.assert_allclose(got[:250], exact[:250], atol=1e-5)           # piece 0 starts at ids[0]
        dev[w] = float(np.abs(got - exact).mean())
    assert dev[100] < dev[0] / 2 and dev[0] > 1e-3


def test_stream_layout_caps():
    assert stream_layout(1000, 64, 256) == (63, 16, 16)    # ceil(1000/64) = 16 steps: 63 pieces, warmup <= 16
    assert stream_layout(10, 1, 5) == (1, 10, 0)           # one stream: exact, no warmup
    with pytest.raises(UserError, match=r"^streams must be >= 1, got 0$") as exc:
        stream_layout(10, 0, 0)
    assert exc.value.param == "streams"
    with pytest.raises(UserError, match=r"^warmup must be >= 0") as exc:
        stream_layout(10, 1, -1)
    assert exc.value.param == "warmup"


def test_char_losses_average_to_the_evaluated_loss(wp_small, wp_ids):
    losses = char_losses(wp_small.model, wp_ids, chunk=300)
    assert losses.shape == (len(wp_ids) - 1,) and losses.dtype == np.float32
    assert abs(float(losses.mean()) - evaluate(wp_small.model, wp_ids).loss_nats) < 1e-5


def test_zeroing_a_cell_from_position_t_changes_losses_from_t_on_only(wp_small, wp_ids):
    model, t = wp_small.model, 400
    units = list(range(0, 128, 4))
    noop = char_losses(model, wp_ids, [Intervention("rnn.l1.c", units, "scale", 1.0)], chunk=250)
    ablated = char_losses(model, wp_ids, [Intervention("rnn.l1.c", units, "zero", positions=slice(t, None))],
                          chunk=250)
    plain = char_losses(model, wp_ids)
    np.testing.assert_allclose(noop, plain, atol=1e-4)      # loop vs fused kernel: rounding only
    assert np.array_equal(ablated[:t], noop[:t])             # losses[k] reads ids[:k+1]: before t, untouched
    assert np.abs(ablated[t:] - noop[t:]).min() > 0          # every later prediction moves
    assert ablated[t:].mean() > noop[t:].mean() + 0.05       # and the model is worse without those cells


def test_interventions_set_recorded_values(wp_small, wp_ids):
    ivs = [Intervention("rnn.l0.c", [3, 7], "clamp", 2.5, positions=np.array([10, 11, 900])),
           Intervention("rnn.l1.h", [0], "scale", 0.0, positions=slice(100, 200, 10))]
    acts = record(wp_small.model, wp_ids, ("h", "c"), interventions=ivs, chunk=256)
    assert np.all(acts["rnn.l0.c"][[10, 11, 900]][:, [3, 7]] == 2.5)
    assert np.all(acts["rnn.l0.c"][12, [3, 7]] != 2.5)
    assert np.all(acts["rnn.l1.h"][100:200:10, 0] == 0) and np.all(acts["rnn.l1.h"][101:200:10, 0] != 0)
    # with streams the positions still refer to ids, whichever piece reads them
    streamed = record(wp_small.model, wp_ids, ("c",), interventions=ivs[:1], streams=3, warmup=50)
    assert np.all(streamed["rnn.l0.c"][[10, 11, 900]][:, [3, 7]] == 2.5)


def test_gru_and_rnn_models_record_h_and_their_gates():
    for cell, gates in (("gru", ("r", "z", "n")), ("rnn", ())):
        torch.manual_seed(0)
        model = CharRNN(ModelConfig(vocab_size=11, cell=cell, hidden_size=16, num_layers=2)).eval()
        ids = np.random.default_rng(0).integers(0, 11, 300)
        acts = record(model, ids, ("h", "c", "gates"), chunk=128)
        assert sorted(acts) == sorted([f"rnn.l{k}.h" for k in range(2)] +
                                      [f"rnn.l{k}.gate_{g}" for k in range(2) for g in gates])
        top, _ = fused(model, ids)
        np.testing.assert_allclose(acts["rnn.l1.h"], top, atol=1e-5)


def test_bad_input_is_a_one_line_user_error(wp_small, wp_ids):
    model = wp_small.model
    with pytest.raises(UserError, match="unknown state 'x'"):
        list(iter_states(model, wp_ids, ("h", "x")))
    assert parse_states("h, c,f") == ("h", "c", "gate_f")
    with pytest.raises(UserError, match="cannot intervene on 'rnn.l5.c'"):
        char_losses(model, wp_ids, [Intervention("rnn.l5.c", [0])])
    with pytest.raises(UserError, match="unit 500 of rnn.l0.h does not exist"):
        char_losses(model, wp_ids, [Intervention("rnn.l0.h", [500])])
    with pytest.raises(UserError, match="unknown intervention 'double'"):
        Intervention("rnn.l0.h", [1], "double")
    with pytest.raises(UserError, match="edit h or c"):
        Intervention("rnn.l0.gate_f", [1])
    with pytest.raises(UserError, match="not a CharRNN"):
        list(iter_states(torch.nn.Linear(3, 3), wp_ids))
    hollow = CharRNN(ModelConfig(vocab_size=84, hidden_size=8, num_layers=1))
    hollow.rnn = torch.nn.Identity()                          # a model with no recurrent layer
    with pytest.raises(UserError, match="has no nn.LSTM, nn.GRU or nn.RNN"):
        list(iter_states(hollow, wp_ids))
    with pytest.raises(UserError, match="empty"):
        list(iter_states(model, wp_ids[:0]))
    with pytest.raises(UserError, match="at least 2"):
        char_losses(model, wp_ids[:1])


def test_states_the_cell_does_not_have_are_refused_by_the_library(wp_small, wp_ids):
    for states in (("r",), ("gate_z",), ("h", "n")):
        with pytest.raises(UserError, match=r"states .* this lstm model, which has h, c, gates \(i, f, g, o\)") as exc:
            record(wp_small.model, wp_ids, states)
        assert exc.value.param == "states"
    torch.manual_seed(0)
    for cell, has in (("gru", r"h, gates \(r, z, n\)"), ("rnn", "h$")):
        model = CharRNN(ModelConfig(vocab_size=11, cell=cell, hidden_size=8, num_layers=1)).eval()
        with pytest.raises(UserError, match=f"which has {has}"):
            list(iter_states(model, np.arange(5), ("f",)))
        assert sorted(record(model, np.arange(5), ("h", "c"))) == ["rnn.l0.h"]   # c: skipped, as documented
    with pytest.raises(UserError, match="which has h$"):
        record(model, np.arange(5), ("c", "gates"))                            # nothing left to record


def test_a_span_of_one_character_is_a_user_error_naming_chars(wp_small, wp_ids):
    for fn in (char_losses, evaluate):
        with pytest.raises(UserError, match="at least 2") as exc:
            fn(wp_small.model, wp_ids[:1])
        assert exc.value.param == "chars"


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_loss_that_is_not_finite_is_a_user_error(wp_small, wp_ids, value):
    """A NaN loss used to be returned, and printed as JSON that is not valid (NaN)."""
    import copy
    model = copy.deepcopy(wp_small.model)
    with torch.no_grad():
        model.decoder.weight[3, 5] = value
    with pytest.raises(UserError, match=r"the model's loss is not finite \(NaN or inf weights\?\)"):
        evaluate(model, wp_ids)
    with pytest.raises(UserError, match="not finite"):
        evaluate(model, wp_ids, streams=4)


def test_cli_eval_of_one_character_is_one_line(tmp_path, shared_models):
    from click.testing import CliRunner

    from neuroscope.cli import cli
    text = tmp_path / "t.txt"
    text.write_text("Hello, world. " * 10)
    res = CliRunner().invoke(cli, ["eval", "--ckpt", str(shared_models / "wp_lstm2x128.pt"), "--text", str(text),
                                   "--split", "all", "--chars", "1", "--json"])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert res.output.strip().splitlines() == ["Error: evaluation needs at least 2 characters (--chars >= 2)"]
